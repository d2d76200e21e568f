"""account_version: a per-account counter that triggers bump on every write the caches read

Revision ID: 0008_account_version
Revises: 0007_enrichment
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from capture_server.store.cache import VERSION_TABLE, drop_triggers, install_triggers

revision = "0008_account_version"
down_revision = "0007_enrichment"
branch_labels = None
depends_on = None

# The tables watched as of this revision; later ones install their own (0014: webhook).
TABLES = (
    "account",
    "account_domain",
    "capture_address",
    "app_user",
    "user_address",
    "never_log",
    "tombstone",
    "extractor",
)


def upgrade() -> None:
    # No foreign key to account: the row of a deleted account must outlive it (see cache.py).
    op.create_table(
        VERSION_TABLE,
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_account_version")),
    )
    install_triggers(op.get_bind(), TABLES)


def downgrade() -> None:
    drop_triggers(op.get_bind())
    op.drop_table(VERSION_TABLE)
