"""event_raw_sha256: ingest's resume check recognises a message without a Message-ID

Revision ID: 0013_event_raw_sha256
Revises: 0012_sync_seq
Create Date: 2026-12-01

`ingest` skips a message whose Message-ID is already an engagement or a capture event of the
account. A message without one went through the pipeline again on every re-run and wrote one
more capture event each time. Its event now keeps the SHA-256 of the raw message, indexed
(partially: only such events have it), and the resume check looks it up.

Events written before with the raw archive on already know that hash: their archive_key.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_event_raw_sha256"
down_revision = "0012_sync_seq"
branch_labels = None
depends_on = None

_HAS_HASH = sa.text("raw_sha256 IS NOT NULL")


def upgrade() -> None:
    # Not a batch rebuild (SQLite), which would drop 0012's trigger numbering capture_event.
    op.add_column("capture_event", sa.Column("raw_sha256", sa.String(), nullable=True))
    op.execute(
        "UPDATE capture_event SET raw_sha256 = archive_key "
        "WHERE header_message_id IS NULL AND archive_key IS NOT NULL"
    )
    op.create_index(
        "ix_capture_event_account_raw_sha256",
        "capture_event",
        ["account_id", "raw_sha256"],
        sqlite_where=_HAS_HASH,
        postgresql_where=_HAS_HASH,
    )


def downgrade() -> None:
    op.drop_index("ix_capture_event_account_raw_sha256", table_name="capture_event")
    # SQLite drops an unindexed column itself (3.35+): no batch rebuild.
    op.drop_column("capture_event", "raw_sha256")
