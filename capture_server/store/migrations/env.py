"""Alembic environment: the engine comes from capture_server.store.db, never from an ini."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import capture_server.store.integration_models
import capture_server.store.models  # noqa: F401  (registers the tables)

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
