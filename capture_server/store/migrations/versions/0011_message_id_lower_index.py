"""message_id_lower_index: reply threading finds a Message-ID without scanning the account

Revision ID: 0011_message_id_lower_index
Revises: 0010_contact_profile
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_message_id_lower_index"
down_revision = "0010_contact_profile"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Store._threads_of compares lower(message_id) (Message-IDs arrive in any letter case);
    # the plain (account_id, message_id) index cannot serve that, so every message scanned
    # all of its account's engagements.
    op.create_index(
        "ix_engagement_account_message_id_lower",
        "engagement",
        ["account_id", sa.text("lower(message_id)")],
    )


def downgrade() -> None:
    op.drop_index("ix_engagement_account_message_id_lower", table_name="engagement")
