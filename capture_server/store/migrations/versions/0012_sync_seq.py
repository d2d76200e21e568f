"""sync_seq: the order in which engagements, contacts and events become visible (API paging)

Revision ID: 0012_sync_seq
Revises: 0011_message_id_lower_index
Create Date: 2026-11-29

created_at is set by the application before the commit, so on PostgreSQL a row with an earlier
created_at can commit after a client of the read API has paged past it. Each row now records
its position in the order rows become visible, and the API pages on that:

- PostgreSQL: the writing transaction's id (pg_current_xact_id(), 64 bits, never reused), as a
  column default. The API lists only rows older than every transaction still in progress
  (pg_snapshot_xmin), so no row can later commit behind a position a client has passed.
- SQLite: writers take turns, so a counter that never goes back (sync_sequence; a trigger
  numbers each row as it is inserted) is already the order of the commits.

Rows written before this migration get numbers below any new one, in their created_at order.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from capture_server.store.sync_order import (
    COUNTER,
    SYNC_TABLES,
    install_sync_triggers,
    sync_trigger_name,
)

revision = "0012_sync_seq"
down_revision = "0011_message_id_lower_index"
branch_labels = None
depends_on = None

_PG_DEFAULT = "(pg_current_xact_id()::text::bigint)"


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table, when in SYNC_TABLES.items():
        # Nullable and no default yet: no rewrite of the table (nor a SQLite batch rebuild).
        op.add_column(table, sa.Column("sync_seq", sa.BigInteger(), nullable=True))
        # Existing rows: 1-n … 0, oldest first. Below every transaction id (≥ 3) and below
        # SQLite's counter (it starts at 0), so every row written from now on comes after.
        op.execute(
            f"UPDATE {table} SET sync_seq = numbered.seq FROM ("  # noqa: S608 (constants)
            f"SELECT id, row_number() OVER (ORDER BY {when}, id) - count(*) OVER () AS seq "
            f"FROM {table}) AS numbered WHERE {table}.id = numbered.id"
        )
        if not sqlite:
            op.alter_column(table, "sync_seq", server_default=sa.text(_PG_DEFAULT))
        op.create_index(f"ix_{table}_account_sync", table, ["account_id", "sync_seq", when, "id"])
    if sqlite:
        op.create_table(
            COUNTER,
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("value", sa.BigInteger(), nullable=False),
            sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{COUNTER}")),
        )
        op.execute(f"INSERT INTO {COUNTER} (id, value) VALUES (1, 0)")  # noqa: S608
        install_sync_triggers(op.get_bind())


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        for table in SYNC_TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {sync_trigger_name(table)}")
        op.drop_table(COUNTER)
    for table in SYNC_TABLES:
        op.drop_index(f"ix_{table}_account_sync", table_name=table)
        # Not a batch rebuild, which would lose the expression index of 0011: SQLite drops an
        # unindexed column itself (3.35+).
        op.drop_column(table, "sync_seq")
