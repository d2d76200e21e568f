"""raw archive: the archive key (SHA-256 of the raw message) on each capture event

`replay --since` finds the archived messages of an account through it, and
`archive purge` keeps every file a capture event younger than the retention refers to.

Revision ID: 0006_archive_key
Revises: 0005_event_headers
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_archive_key"
down_revision = "0005_event_headers"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: events recorded before this revision, or with the archive off, have none.
    with op.batch_alter_table("capture_event", schema=None) as batch_op:
        batch_op.add_column(sa.Column("archive_key", sa.String(), nullable=True))
        batch_op.create_index("ix_capture_event_archive_key", ["archive_key"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("capture_event", schema=None) as batch_op:
        batch_op.drop_index("ix_capture_event_archive_key")
        batch_op.drop_column("archive_key")
