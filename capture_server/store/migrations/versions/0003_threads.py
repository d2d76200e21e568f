"""reply capture: Message-IDs known per thread, and the subject hash of each engagement

Revision ID: 0003_threads
Revises: 0002_notice_sent
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_threads"
down_revision = "0002_notice_sent"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "thread_message",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.String(), nullable=False),
        sa.Column("thread_id", sa.String(), nullable=False),
        sa.Column("engagement_id", sa.String(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["account.id"], name=op.f("fk_thread_message_account_id_account")
        ),
        sa.PrimaryKeyConstraint("account_id", "message_id", name=op.f("pk_thread_message")),
    )
    with op.batch_alter_table("engagement", schema=None) as batch_op:
        batch_op.add_column(sa.Column("subject_hash", sa.String(), nullable=True))
        batch_op.create_index(
            "ix_engagement_account_subject_hash", ["account_id", "subject_hash"], unique=False
        )
    _backfill()


def _backfill() -> None:
    """Engagements logged before this revision: their ids and References join their thread.

    The subject hash stays empty for them (the subject fallback is opt-in and time-limited).
    """
    connection = op.get_bind()
    engagement = sa.table(
        "engagement",
        sa.column("id", sa.String()),
        sa.column("account_id", sa.Integer()),
        sa.column("thread_id", sa.String()),
        sa.column("message_id", sa.String()),
        sa.column("in_reply_to", sa.String()),
        sa.column("references_text", sa.Text()),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    seen: set[tuple[int, str]] = set()
    rows = []
    query = sa.select(engagement).order_by(engagement.c.created_at, engagement.c.id)
    for row in connection.execute(query):
        ids = [row.message_id, row.in_reply_to, *(row.references_text or "").split()]
        for message_id in ids:
            key = (row.account_id, (message_id or "").strip().lower())
            if not key[1] or key in seen:
                continue
            seen.add(key)
            rows.append(
                {"account_id": key[0], "message_id": key[1], "thread_id": row.thread_id,
                 "engagement_id": row.id}
            )  # fmt: skip
    if rows:
        thread_message = sa.table(
            "thread_message",
            sa.column("account_id", sa.Integer()),
            sa.column("message_id", sa.String()),
            sa.column("thread_id", sa.String()),
            sa.column("engagement_id", sa.String()),
        )
        connection.execute(thread_message.insert(), rows)


def downgrade() -> None:
    with op.batch_alter_table("engagement", schema=None) as batch_op:
        batch_op.drop_index("ix_engagement_account_subject_hash")
        batch_op.drop_column("subject_hash")
    op.drop_table("thread_message")
