"""operations: the received message's own From and Message-ID on each capture event

`events --sender` matches the From header as well as the envelope, and `ingest` skips a
message already stored by its Message-ID even when it was ignored (no engagement).

Revision ID: 0005_event_headers
Revises: 0004_auth_results
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_event_headers"
down_revision = "0004_auth_results"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: events recorded before this revision have neither.
    with op.batch_alter_table("capture_event", schema=None) as batch_op:
        batch_op.add_column(sa.Column("header_from", sa.String(), nullable=True))
        batch_op.add_column(sa.Column("header_message_id", sa.String(), nullable=True))
        batch_op.create_index(
            "ix_capture_event_account_header_message_id",
            ["account_id", "header_message_id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("capture_event", schema=None) as batch_op:
        batch_op.drop_index("ix_capture_event_account_header_message_id")
        batch_op.drop_column("header_message_id")
        batch_op.drop_column("header_from")
