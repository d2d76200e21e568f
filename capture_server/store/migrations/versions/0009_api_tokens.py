"""api_tokens: bearer tokens of the read API (a SHA-256 hash only), indexes for its paging

Revision ID: 0009_api_tokens
Revises: 0008_account_version
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_api_tokens"
down_revision = "0008_account_version"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Not part of the account snapshot, so no cache-version trigger (see cache.py).
    op.create_table(
        "api_token",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("token_hash", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["account.id"], name=op.f("fk_api_token_account_id_account")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_token")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_token_token_hash")),
    )
    op.create_index(op.f("ix_api_token_account_id"), "api_token", ["account_id"])
    # The API pages on (created_at, id) within an account.
    op.create_index(
        "ix_engagement_account_created", "engagement", ["account_id", "created_at", "id"]
    )
    op.create_index("ix_contact_account_created", "contact", ["account_id", "created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_contact_account_created", table_name="contact")
    op.drop_index("ix_engagement_account_created", table_name="engagement")
    op.drop_index(op.f("ix_api_token_account_id"), table_name="api_token")
    op.drop_table("api_token")
