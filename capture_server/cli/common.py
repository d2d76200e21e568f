"""What every command module shares: the typer apps, consoles, settings and store."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TextIO, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from capture_server.config import ConfigError, Settings, load_settings
from capture_server.store.db import (
    DatabaseConfigError,
    is_up_to_date,
    make_engine,
    sqlite_file,
)
from capture_server.store.repositories import Store, StoreError

app = typer.Typer(
    help="capture-server: turn BCC'd, forwarded and replied email into CRM activity.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
account_app = typer.Typer(help="Accounts (tenants) and their capture addresses.")
user_app = typer.Typer(help="Users (reps) of an account and their addresses.")
engagements_app = typer.Typer(help="Logged emails.")
contacts_app = typer.Typer(help="Contacts created or matched by capture.")
app.add_typer(account_app, name="account")
app.add_typer(user_app, name="user")
app.add_typer(engagements_app, name="engagements")
app.add_typer(contacts_app, name="contacts")

# The first argument of most commands; one help text for all of them.
SlugArg = Annotated[str, typer.Argument(help="the account's slug")]
# --json for commands that print one object, and for listings (one object per line).
JsonLine = Annotated[bool, typer.Option("--json", help="one JSON object")]
JsonLines = Annotated[bool, typer.Option("--json", help="one JSON object per line")]


def piped_width(stream: TextIO) -> int | None:
    """Tables written to a pipe or a file keep whole cells, as `ps` does: cut to 80 columns
    (rich's width without a terminal) an id or an address is useless to grep or awk.
    None (rich's own reckoning) on a terminal, or when COLUMNS says how wide to be."""
    try:
        terminal = stream.isatty()
    except (AttributeError, ValueError):  # replaced, or closed
        terminal = False
    return None if terminal or os.environ.get("COLUMNS") else PIPED_WIDTH


PIPED_WIDTH = 100_000  # wider than any row; tables are as wide as their content

# markup=False: what is printed holds mail (subjects, names) and paths, never rich markup;
# "[/b]" in a subject once crashed a table, and "[ext]" vanished from it.
out = Console(soft_wrap=True, highlight=False, markup=False, width=piped_width(sys.stdout))
err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)


class State:
    config: Path | None = None
    database_url: str | None = None


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}", markup=True)
    raise typer.Exit(code)


def settings(**overrides: Any) -> Settings:
    try:
        return load_settings(State.config, database_url=State.database_url, **overrides)
    except ConfigError as error:
        fail(str(error), 2)


def open_store(current: Settings, *, require_schema: bool = True) -> Store:
    try:
        engine = make_engine(
            current.database_url, lock_timeout=current.database_lock_timeout_seconds
        )
        missing = missing_sqlite_file(engine) if require_schema else None
        if missing is not None:  # connecting would leave an empty file behind a typo
            fail(f"no database file {missing}: run `capture-server init`, or check the URL")
        if require_schema and not is_up_to_date(engine):
            fail("the database is not initialised or is out of date: run `capture-server init`")
        return Store(engine)
    except DatabaseConfigError as error:
        fail(str(error), 2)
    except DBAPIError as error:
        fail(f"cannot reach the database: {first_line(error)}")


def missing_sqlite_file(engine: Engine) -> str | None:
    """The file a SQLite URL names when it does not exist (SQLite would create it)."""
    database = sqlite_file(engine)
    if database is None or database.startswith("file:"):  # a URI: SQLite's to read
        return None
    return None if Path(database).exists() else database


T = TypeVar("T")


def with_store(action: Callable[[Store], T], *also: type[Exception]) -> T:
    """Open the store, run one action on it; a user's mistake (StoreError, or one of `also`)
    becomes a one-line error."""
    store = open_store(settings())
    expected: tuple[type[Exception], ...] = (StoreError, *also)
    try:
        return action(store)
    except expected as error:
        fail(str(error))


def first_line(error: BaseException) -> str:
    text = str(getattr(error, "orig", None) or error)
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False, default=str) + "\n")
