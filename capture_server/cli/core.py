"""Daemon and database commands: init, serve, version."""

from __future__ import annotations

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
from capture_server.config import ConfigError, Settings, load_settings
from capture_server.logging import configure_logging
from capture_server.store.db import migrate
from capture_server.store.repositories import Store


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
    workers: Annotated[
        str | None, typer.Option(help="daemon processes: N, or auto (one per CPU); default 1")
    ] = None,
) -> None:
    """Run the daemon (migrates the database first). SIGTERM drains mail in flight.

    With workers > 1 this process supervises N daemon processes on the same listeners.
    """
    from capture_server.daemon import Daemon, loop_factory, run_loop

    current = settings(smtp_listen=smtp, lmtp_listen=lmtp, workers=workers)
    try:
        loop_factory(current.event_loop)
    except ConfigError as error:
        fail(str(error), 2)
    configure_logging(current.log_format, current.log_level)
    store = open_store(current, require_schema=False)
    try:
        migrate(store.engine)
    except DBAPIError as error:
        fail(f"cannot migrate the database: {first_line(error)}")
    if current.worker_count > 1:
        _supervise(current, store, smtp_listen=smtp, lmtp_listen=lmtp, workers=workers)
        return
    try:
        reload = partial(
            load_settings, State.config, database_url=State.database_url,
            smtp_listen=smtp, lmtp_listen=lmtp, workers=workers,
        )  # fmt: skip
        run_loop(Daemon(current, store, reload).run(), current.event_loop)
    except OSError as error:
        fail(f"cannot listen: {error.strerror or error}")


def _supervise(current: Settings, store: Store, **options: str | None) -> None:
    """workers > 1: bind the listeners, run and watch the worker processes (workers.py)."""
    from capture_server.workers import Launch, Supervisor, WorkersFailing

    overrides = {"database_url": State.database_url, **options}
    launch = Launch(State.config, {k: v for k, v in overrides.items() if v is not None})
    store.engine.dispose()  # the workers open their own connections; ours come back on demand
    try:
        code = Supervisor(current, store, launch).main()
    except OSError as error:
        fail(f"cannot listen: {error.strerror or error}")
    except WorkersFailing as error:
        fail(str(error))
    if code:
        raise typer.Exit(code)
