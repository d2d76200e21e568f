"""contact_profile: contact fields read from signatures (with who set them), suggestions

Revision ID: 0010_contact_profile
Revises: 0009_api_tokens
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_contact_profile"
down_revision = "0009_api_tokens"
branch_labels = None
depends_on = None

_FIELDS = ("job_title", "company_name", "phone", "website")


def upgrade() -> None:
    # Neither the contact nor its suggestions are part of the account snapshot: no
    # cache-version trigger (see cache.py).
    for name in _FIELDS:
        op.add_column("contact", sa.Column(name, sa.String(), nullable=True))
    op.add_column(
        "contact",
        sa.Column("field_sources", sa.Text(), nullable=False, server_default="{}"),
    )
    op.create_table(
        "contact_suggestion",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("field", sa.String(), nullable=False),
        sa.Column("value", sa.String(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("engagement_id", sa.String(), nullable=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["account.id"], name=op.f("fk_contact_suggestion_account_id_account")
        ),
        sa.ForeignKeyConstraint(
            ["contact_id"], ["contact.id"], name=op.f("fk_contact_suggestion_contact_id_contact")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contact_suggestion")),
    )
    op.create_index(op.f("ix_contact_suggestion_contact_id"), "contact_suggestion", ["contact_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_contact_suggestion_contact_id"), table_name="contact_suggestion")
    op.drop_table("contact_suggestion")
    with op.batch_alter_table("contact") as batch:
        for name in ("field_sources", *reversed(_FIELDS)):
            batch.drop_column(name)
