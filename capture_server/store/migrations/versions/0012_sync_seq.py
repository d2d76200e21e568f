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

revision = "0012_sync_seq"
down_revision = "0011_message_id_lower_index"
branch_labels = None
depends_on = None

# table → the column it was ordered by before (a tie-break within one transaction now)
_TABLES = {"engagement": "created_at", "contact": "created_at", "capture_event": "received_at"}
_COUNTER = "sync_sequence"
_PG_DEFAULT = "(pg_current_xact_id()::text::bigint)"


def _trigger(table: str) -> str:
    return f"capture_sync_seq_{table}"


def _sqlite_trigger(table: str) -> str:
    number = f"(SELECT value FROM {_COUNTER} WHERE id = 1)"  # noqa: S608 (constants only)
    bump = f"UPDATE {_COUNTER} SET value = value + 1 WHERE id = 1"  # noqa: S608
    number_row = f"UPDATE {table} SET sync_seq = {number} WHERE id = NEW.id"  # noqa: S608
    return (
        f"CREATE TRIGGER {_trigger(table)} AFTER INSERT ON {table} FOR EACH ROW "
        f"WHEN NEW.sync_seq IS NULL BEGIN {bump}; {number_row}; END"
    )


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table, when in _TABLES.items():
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
            _COUNTER,
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("value", sa.BigInteger(), nullable=False),
            sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{_COUNTER}")),
        )
        op.execute(f"INSERT INTO {_COUNTER} (id, value) VALUES (1, 0)")  # noqa: S608
        for table in _TABLES:
            # AFTER INSERT: SQLite cannot change NEW in a BEFORE trigger. A batch migration
            # that rebuilds one of these tables drops its trigger: it must create it again.
            op.execute(_sqlite_trigger(table))


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        for table in _TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {_trigger(table)}")
        op.drop_table(_COUNTER)
    for table in _TABLES:
        op.drop_index(f"ix_{table}_account_sync", table_name=table)
        # Not a batch rebuild, which would lose the expression index of 0011: SQLite drops an
        # unindexed column itself (3.35+).
        op.drop_column(table, "sync_seq")
