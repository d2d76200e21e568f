"""sender authentication: the Authentication-Results structure of each capture event

Revision ID: 0004_auth_results
Revises: 0003_threads
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_auth_results"
down_revision = "0003_threads"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: events recorded before this revision, or with auth_mode off, have none.
    with op.batch_alter_table("capture_event", schema=None) as batch_op:
        batch_op.add_column(sa.Column("authentication_json", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("capture_event", schema=None) as batch_op:
        batch_op.drop_column("authentication_json")
