"""notices: one per message, rate-limited per rep

Revision ID: 0002_notice_sent
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_notice_sent"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notice_sent",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("message_key", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["account.id"], name=op.f("fk_notice_sent_account_id_account")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["app_user.id"], name=op.f("fk_notice_sent_user_id_app_user")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notice_sent")),
        sa.UniqueConstraint(
            "account_id", "message_key", name=op.f("uq_notice_sent_account_id_message_key")
        ),
    )
    op.create_index("ix_notice_sent_user_sent", "notice_sent", ["user_id", "sent_at"])


def downgrade() -> None:
    op.drop_index("ix_notice_sent_user_sent", table_name="notice_sent")
    op.drop_table("notice_sent")
