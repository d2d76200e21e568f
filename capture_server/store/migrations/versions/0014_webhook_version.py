"""webhook_version: writes to an account's webhook list bump its account_version

Revision ID: 0014_webhook_version
Revises: 0013_event_raw_sha256
Create Date: 2026-12-02

The webhooks a message's outbox rows are written for were read once per logged message,
in its write transaction. They are now cached with the rest of the account (store/cache.py)
and need the version triggers: on insert, on delete, and on an update of the columns that
decide the list (account_id, events). Other updates (a URL, a secret) bump nothing.
"""

from __future__ import annotations

from alembic import op

from capture_server.store.cache import drop_triggers, install_triggers

revision = "0014_webhook_version"
down_revision = "0013_event_raw_sha256"
branch_labels = None
depends_on = None

TABLES = ("webhook",)


def upgrade() -> None:
    install_triggers(op.get_bind(), TABLES)


def downgrade() -> None:
    drop_triggers(op.get_bind(), TABLES)
