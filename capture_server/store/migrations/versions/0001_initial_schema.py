"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "account",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("settings_json", sa.Text(), nullable=False),
        sa.Column("fallback_owner_id", sa.Integer(), nullable=True),
        sa.Column("token_generation", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account")),
        sa.UniqueConstraint("slug", name=op.f("uq_account_slug")),
    )
    op.create_table(
        "blob",
        sa.Column("sha256", sa.String(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_blob")),
    )
    op.create_table(
        "server_state",
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("value", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_server_state")),
    )
    op.create_table(
        "account_domain",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("domain", sa.String(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["account.id"], name=op.f("fk_account_domain_account_id_account")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_domain")),
        sa.UniqueConstraint(
            "account_id", "domain", name=op.f("uq_account_domain_account_id_domain")
        ),
    )
    with op.batch_alter_table("account_domain", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_account_domain_account_id"), ["account_id"], unique=False
        )

    op.create_table(
        "app_user",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=True),
        sa.Column("sharing", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["account.id"], name=op.f("fk_app_user_account_id_account")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_app_user")),
        sa.UniqueConstraint("account_id", "email", name=op.f("uq_app_user_account_id_email")),
    )
    with op.batch_alter_table("app_user", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_app_user_account_id"), ["account_id"], unique=False)

    op.create_table(
        "capture_address",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("address", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["account.id"], name=op.f("fk_capture_address_account_id_account")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_capture_address")),
        sa.UniqueConstraint("address", name=op.f("uq_capture_address_address")),
    )
    with op.batch_alter_table("capture_address", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_capture_address_account_id"), ["account_id"], unique=False
        )

    op.create_table(
        "capture_event",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("protocol", sa.String(), nullable=False),
        sa.Column("mail_from", sa.String(), nullable=False),
        sa.Column("rcpt", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=True),
        sa.Column("message_id", sa.String(), nullable=True),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("decision", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("smtp_reply", sa.String(), nullable=False),
        sa.Column("engagement_id", sa.String(), nullable=True),
        sa.Column("trace_json", sa.Text(), nullable=False),
        sa.Column("warnings_json", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["account.id"], name=op.f("fk_capture_event_account_id_account")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_capture_event")),
    )
    with op.batch_alter_table("capture_event", schema=None) as batch_op:
        batch_op.create_index(
            "ix_capture_event_account_received", ["account_id", "received_at"], unique=False
        )

    op.create_table(
        "company",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("domain", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["account.id"], name=op.f("fk_company_account_id_account")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_company")),
        sa.UniqueConstraint("account_id", "domain", name=op.f("uq_company_account_id_domain")),
    )
    op.create_table(
        "deal",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("stage", sa.String(), nullable=False),
        sa.Column("is_open", sa.Boolean(), nullable=False),
        sa.Column("close_date", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["account.id"], name=op.f("fk_deal_account_id_account")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deal")),
    )
    with op.batch_alter_table("deal", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_deal_account_id"), ["account_id"], unique=False)

    op.create_table(
        "never_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("pattern", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["account.id"], name=op.f("fk_never_log_account_id_account")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_never_log")),
        sa.UniqueConstraint("account_id", "pattern", name=op.f("uq_never_log_account_id_pattern")),
    )
    op.create_table(
        "tombstone",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("address_hash", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["account.id"], name=op.f("fk_tombstone_account_id_account")
        ),
        sa.PrimaryKeyConstraint("account_id", "address_hash", name=op.f("pk_tombstone")),
    )
    op.create_table(
        "contact",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("primary_address", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=True),
        sa.Column("company_id", sa.Integer(), nullable=True),
        sa.Column("created_by", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["account.id"], name=op.f("fk_contact_account_id_account")
        ),
        sa.ForeignKeyConstraint(
            ["company_id"], ["company.id"], name=op.f("fk_contact_company_id_company")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contact")),
        sa.UniqueConstraint(
            "account_id", "primary_address", name=op.f("uq_contact_account_id_primary_address")
        ),
    )
    op.create_table(
        "engagement",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("dedupe_key", sa.String(), nullable=False),
        sa.Column("content_hash", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("direction", sa.String(), nullable=False),
        sa.Column("owner_user_id", sa.Integer(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("message_id", sa.String(), nullable=True),
        sa.Column("in_reply_to", sa.String(), nullable=True),
        sa.Column("references_text", sa.Text(), nullable=False),
        sa.Column("from_address", sa.String(), nullable=True),
        sa.Column("from_name", sa.String(), nullable=True),
        sa.Column("body_text", sa.Text(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("thread_id", sa.String(), nullable=False),
        sa.Column("sharing", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["account.id"], name=op.f("fk_engagement_account_id_account")
        ),
        sa.ForeignKeyConstraint(
            ["owner_user_id"], ["app_user.id"], name=op.f("fk_engagement_owner_user_id_app_user")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_engagement")),
        sa.UniqueConstraint(
            "account_id", "dedupe_key", name=op.f("uq_engagement_account_id_dedupe_key")
        ),
    )
    with op.batch_alter_table("engagement", schema=None) as batch_op:
        batch_op.create_index(
            "ix_engagement_account_message_id", ["account_id", "message_id"], unique=False
        )
        batch_op.create_index(
            "ix_engagement_account_thread", ["account_id", "thread_id"], unique=False
        )

    op.create_table(
        "user_address",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["account.id"], name=op.f("fk_user_address_account_id_account")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["app_user.id"], name=op.f("fk_user_address_user_id_app_user")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_address")),
        sa.UniqueConstraint("user_id", "address", name=op.f("uq_user_address_user_id_address")),
    )
    with op.batch_alter_table("user_address", schema=None) as batch_op:
        batch_op.create_index(
            "ix_user_address_account_address", ["account_id", "address"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_user_address_user_id"), ["user_id"], unique=False)

    op.create_table(
        "attachment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("engagement_id", sa.String(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("filename", sa.String(), nullable=True),
        sa.Column("content_type", sa.String(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(), nullable=False),
        sa.ForeignKeyConstraint(
            ["engagement_id"],
            ["engagement.id"],
            name=op.f("fk_attachment_engagement_id_engagement"),
        ),
        sa.ForeignKeyConstraint(
            ["sha256"], ["blob.sha256"], name=op.f("fk_attachment_sha256_blob")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attachment")),
    )
    with op.batch_alter_table("attachment", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_attachment_engagement_id"), ["engagement_id"], unique=False
        )

    op.create_table(
        "contact_address",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["account.id"], name=op.f("fk_contact_address_account_id_account")
        ),
        sa.ForeignKeyConstraint(
            ["contact_id"], ["contact.id"], name=op.f("fk_contact_address_contact_id_contact")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contact_address")),
        sa.UniqueConstraint(
            "contact_id", "address", name=op.f("uq_contact_address_contact_id_address")
        ),
    )
    with op.batch_alter_table("contact_address", schema=None) as batch_op:
        batch_op.create_index(
            "ix_contact_address_account_address", ["account_id", "address"], unique=False
        )

    op.create_table(
        "deal_contact",
        sa.Column("deal_id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"], ["contact.id"], name=op.f("fk_deal_contact_contact_id_contact")
        ),
        sa.ForeignKeyConstraint(
            ["deal_id"], ["deal.id"], name=op.f("fk_deal_contact_deal_id_deal")
        ),
        sa.PrimaryKeyConstraint("deal_id", "contact_id", name=op.f("pk_deal_contact")),
    )
    with op.batch_alter_table("deal_contact", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_deal_contact_contact_id"), ["contact_id"], unique=False
        )

    op.create_table(
        "engagement_company",
        sa.Column("engagement_id", sa.String(), nullable=False),
        sa.Column("company_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["company_id"], ["company.id"], name=op.f("fk_engagement_company_company_id_company")
        ),
        sa.ForeignKeyConstraint(
            ["engagement_id"],
            ["engagement.id"],
            name=op.f("fk_engagement_company_engagement_id_engagement"),
        ),
        sa.PrimaryKeyConstraint("engagement_id", "company_id", name=op.f("pk_engagement_company")),
    )
    op.create_table(
        "engagement_contact",
        sa.Column("engagement_id", sa.String(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"], ["contact.id"], name=op.f("fk_engagement_contact_contact_id_contact")
        ),
        sa.ForeignKeyConstraint(
            ["engagement_id"],
            ["engagement.id"],
            name=op.f("fk_engagement_contact_engagement_id_engagement"),
        ),
        sa.PrimaryKeyConstraint("engagement_id", "contact_id", name=op.f("pk_engagement_contact")),
    )
    with op.batch_alter_table("engagement_contact", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_engagement_contact_contact_id"), ["contact_id"], unique=False
        )

    op.create_table(
        "engagement_deal",
        sa.Column("engagement_id", sa.String(), nullable=False),
        sa.Column("deal_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["deal_id"], ["deal.id"], name=op.f("fk_engagement_deal_deal_id_deal")
        ),
        sa.ForeignKeyConstraint(
            ["engagement_id"],
            ["engagement.id"],
            name=op.f("fk_engagement_deal_engagement_id_engagement"),
        ),
        sa.PrimaryKeyConstraint("engagement_id", "deal_id", name=op.f("pk_engagement_deal")),
    )
    op.create_table(
        "participant",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("engagement_id", sa.String(), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=True),
        sa.ForeignKeyConstraint(
            ["engagement_id"],
            ["engagement.id"],
            name=op.f("fk_participant_engagement_id_engagement"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_participant")),
    )
    with op.batch_alter_table("participant", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_participant_engagement_id"), ["engagement_id"], unique=False
        )


def downgrade() -> None:

    with op.batch_alter_table("participant", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_participant_engagement_id"))

    op.drop_table("participant")
    op.drop_table("engagement_deal")
    with op.batch_alter_table("engagement_contact", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_engagement_contact_contact_id"))

    op.drop_table("engagement_contact")
    op.drop_table("engagement_company")
    with op.batch_alter_table("deal_contact", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deal_contact_contact_id"))

    op.drop_table("deal_contact")
    with op.batch_alter_table("contact_address", schema=None) as batch_op:
        batch_op.drop_index("ix_contact_address_account_address")

    op.drop_table("contact_address")
    with op.batch_alter_table("attachment", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_attachment_engagement_id"))

    op.drop_table("attachment")
    with op.batch_alter_table("user_address", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_user_address_user_id"))
        batch_op.drop_index("ix_user_address_account_address")

    op.drop_table("user_address")
    with op.batch_alter_table("engagement", schema=None) as batch_op:
        batch_op.drop_index("ix_engagement_account_thread")
        batch_op.drop_index("ix_engagement_account_message_id")

    op.drop_table("engagement")
    op.drop_table("contact")
    op.drop_table("tombstone")
    op.drop_table("never_log")
    with op.batch_alter_table("deal", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deal_account_id"))

    op.drop_table("deal")
    op.drop_table("company")
    with op.batch_alter_table("capture_event", schema=None) as batch_op:
        batch_op.drop_index("ix_capture_event_account_received")

    op.drop_table("capture_event")
    with op.batch_alter_table("capture_address", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_capture_address_account_id"))

    op.drop_table("capture_address")
    with op.batch_alter_table("app_user", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_app_user_account_id"))

    op.drop_table("app_user")
    with op.batch_alter_table("account_domain", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_account_domain_account_id"))

    op.drop_table("account_domain")
    op.drop_table("server_state")
    op.drop_table("blob")
    op.drop_table("account")
