"""enrichment and integration: extractors and their values, webhooks and their outbox

Revision ID: 0007_enrichment
Revises: 0006_archive_key
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_enrichment"
down_revision = "0006_archive_key"
branch_labels = None
depends_on = None


def _when(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "extractor",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("pattern", sa.Text(), nullable=False),
        _when("created_at"),
        sa.ForeignKeyConstraint(
            ["account_id"], ["account.id"], name=op.f("fk_extractor_account_id_account")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_extractor")),
        sa.UniqueConstraint("account_id", "name", name=op.f("uq_extractor_account_id_name")),
    )
    op.create_table(
        "engagement_value",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("engagement_id", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["engagement_id"],
            ["engagement.id"],
            name=op.f("fk_engagement_value_engagement_id_engagement"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_engagement_value")),
    )
    op.create_index(
        op.f("ix_engagement_value_engagement_id"), "engagement_value", ["engagement_id"]
    )
    op.create_table(
        "webhook",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("secret", sa.String(), nullable=False),
        sa.Column("events", sa.String(), nullable=False),
        _when("created_at"),
        sa.ForeignKeyConstraint(
            ["account_id"], ["account.id"], name=op.f("fk_webhook_account_id_account")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook")),
    )
    op.create_index(op.f("ix_webhook_account_id"), "webhook", ["account_id"])
    op.create_table(
        "webhook_delivery",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("webhook_id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("event", sa.String(), nullable=False),
        sa.Column("idempotency_key", sa.String(), nullable=False),
        sa.Column("payload_json", sa.Text(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _when("next_attempt_at"),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        _when("created_at"),
        _when("delivered_at", nullable=True),
        sa.ForeignKeyConstraint(
            ["webhook_id"], ["webhook.id"], name=op.f("fk_webhook_delivery_webhook_id_webhook")
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["account.id"], name=op.f("fk_webhook_delivery_account_id_account")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_delivery")),
        sa.UniqueConstraint(
            "webhook_id",
            "idempotency_key",
            name=op.f("uq_webhook_delivery_webhook_id_idempotency_key"),
        ),
    )
    op.create_index(
        "ix_webhook_delivery_status_next", "webhook_delivery", ["status", "next_attempt_at"]
    )
    op.create_index(op.f("ix_webhook_delivery_account_id"), "webhook_delivery", ["account_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_webhook_delivery_account_id"), table_name="webhook_delivery")
    op.drop_index("ix_webhook_delivery_status_next", table_name="webhook_delivery")
    op.drop_table("webhook_delivery")
    op.drop_index(op.f("ix_webhook_account_id"), table_name="webhook")
    op.drop_table("webhook")
    op.drop_index(op.f("ix_engagement_value_engagement_id"), table_name="engagement_value")
    op.drop_table("engagement_value")
    op.drop_table("extractor")
