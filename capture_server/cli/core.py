"""Daemon and database commands: init, serve, version."""

from __future__ import annotations

import asyncio
from functools import partial
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.exc import DBAPIError

from capture_server import __version__
from capture_server.cli.common import (
    State,
    app,
    fail,
    first_line,
    open_store,
    out,
    settings,
)
from capture_server.config import load_settings
from capture_server.logging import configure_logging
from capture_server.store.db import migrate


@app.callback()
def main_options(
    config: Annotated[
        Path | None, typer.Option("--config", help="TOML settings file", envvar=None)
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option("--database-url", help="sqlite:///FILE or postgresql+psycopg://..."),
    ] = None,
) -> None:
    State.config = config
    State.database_url = database_url


@app.command()
def version() -> None:
    """Print the version."""
    out.print(__version__)


@app.command()
def init() -> None:
    """Create or migrate the database (Alembic)."""
    current = settings()
    configure_logging(current.log_format, "warning")
    store = open_store(current, require_schema=False)
    try:
        revision = migrate(store.engine)
        store.server_secret(current.server_secret)
    except DBAPIError as error:
        fail(f"cannot migrate the database: {first_line(error)}")
    out.print(f"database ready at revision {revision}: {store.engine.url.render_as_string()}")


@app.command()
def serve(
    smtp: Annotated[str | None, typer.Option(help="SMTP listener HOST:PORT ('' disables)")] = None,
    lmtp: Annotated[str | None, typer.Option(help="LMTP listener HOST:PORT ('' disables)")] = None,
) -> None:
    """Run the daemon (migrates the database first). SIGTERM drains mail in flight."""
    from capture_server.daemon import Daemon

    current = settings(smtp_listen=smtp, lmtp_listen=lmtp)
    configure_logging(current.log_format, current.log_level)
    store = open_store(current, require_schema=False)
    try:
        migrate(store.engine)
    except DBAPIError as error:
        fail(f"cannot migrate the database: {first_line(error)}")
    try:
        reload = partial(
            load_settings, State.config, database_url=State.database_url,
            smtp_listen=smtp, lmtp_listen=lmtp,
        )  # fmt: skip
        asyncio.run(Daemon(current, store, reload).run())
    except OSError as error:
        fail(f"cannot listen: {error.strerror or error}")
