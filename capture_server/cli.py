"""The `capture-server` command (typer). Thin: parse, call, print."""

from __future__ import annotations

import asyncio
import json
import mailbox
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from sqlalchemy.exc import DBAPIError

from capture_server import __version__
from capture_server.capture import CaptureService
from capture_server.config import ConfigError, Settings, load_settings
from capture_server.logging import configure_logging
from capture_server.pipeline.message import (
    CapturedMessage,
    CaptureTarget,
    Decision,
    Envelope,
    SharingLevel,
)
from capture_server.smtp import replies
from capture_server.store.db import DatabaseConfigError, is_up_to_date, make_engine, migrate
from capture_server.store.repositories import Store, StoreError, StoreUnavailable

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

out = Console(soft_wrap=True, highlight=False)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class State:
    config: Path | None = None
    database_url: str | None = None


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", markup=True)
    raise typer.Exit(code)


def settings(**overrides: Any) -> Settings:
    try:
        return load_settings(State.config, database_url=State.database_url, **overrides)
    except ConfigError as error:
        fail(str(error), 2)


def open_store(current: Settings, *, require_schema: bool = True) -> Store:
    try:
        engine = make_engine(current.database_url)
        if require_schema and not is_up_to_date(engine):
            fail("the database is not initialised or is out of date: run `capture-server init`")
        return Store(engine)
    except DatabaseConfigError as error:
        fail(str(error), 2)
    except DBAPIError as error:
        fail(f"cannot reach the database: {_first_line(error)}")


def _first_line(error: BaseException) -> str:
    text = str(getattr(error, "orig", None) or error)
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False, default=str) + "\n")


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
        fail(f"cannot migrate the database: {_first_line(error)}")
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
        fail(f"cannot migrate the database: {_first_line(error)}")
    try:
        asyncio.run(Daemon(current, store).run())
    except OSError as error:
        fail(f"cannot listen: {error.strerror or error}")


@account_app.command("add")
def account_add(
    slug: Annotated[str, typer.Argument(help="short name: lower-case letters, digits, -")],
    name: Annotated[str, typer.Option("--name", help="the company's name")],
    domain: Annotated[
        list[str], typer.Option("--domain", help="the account's own email domain (repeatable)")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON object")] = False,
) -> None:
    """Create an account and print its capture addresses."""
    current = settings()
    store = open_store(current)
    try:
        secret = store.server_secret(current.server_secret)
        addresses = store.create_account(slug, name, domain, current.capture_domain, secret)
    except StoreError as error:
        fail(str(error))
    if as_json:
        print_json({"slug": slug.lower(), **addresses})
        return
    out.print(f"account {slug.lower()} created")
    for key in ("bcc_address", "forward_address", "reply_address"):
        out.print(f"  {key}: {addresses[key]}")


@account_app.command("addresses")
def account_addresses(slug: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Print an account's current capture addresses."""
    store = open_store(settings())
    try:
        addresses = store.capture_addresses(slug)
    except StoreError as error:
        fail(str(error))
    if as_json:
        print_json(addresses)
    else:
        for key, value in sorted(addresses.items()):
            out.print(f"{key}: {value}")


class SharingOption(StrEnum):
    metadata = "metadata"
    subject = "subject"
    everything = "everything"


@user_app.command("add")
def user_add(
    slug: Annotated[str, typer.Argument(help="the account")],
    email: Annotated[str, typer.Argument(help="the user's login email")],
    name: Annotated[str | None, typer.Option("--name")] = None,
    alias: Annotated[list[str] | None, typer.Option("--alias", help="alias address")] = None,
    connected: Annotated[
        list[str] | None, typer.Option("--connected", help="connected inbox address")
    ] = None,
    team: Annotated[
        list[str] | None, typer.Option("--team", help="team address this user connected")
    ] = None,
    sharing: Annotated[
        SharingOption, typer.Option(help="what of this user's mail is kept")
    ] = SharingOption.everything,
) -> None:
    """Add a user (rep) who may log mail."""
    store = open_store(settings())
    try:
        user_id = store.add_user(
            slug,
            email,
            name=name,
            aliases=alias or [],
            connected=connected or [],
            teams=team or [],
            sharing=SharingLevel(sharing.value),
        )
    except StoreError as error:
        fail(str(error))
    out.print(f"user {email.strip().lower()} added to {slug} (id {user_id})")


@engagements_app.command("list")
def engagements_list(
    slug: str,
    thread: Annotated[str | None, typer.Option(help="only this thread id")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
) -> None:
    """List logged emails."""
    store = open_store(settings())
    try:
        rows = store.engagements(slug, thread_id=thread)
    except StoreError as error:
        fail(str(error))
    if as_json:
        for row in rows:
            print_json(row)
        return
    table = Table("id", "when", "kind", "dir", "owner", "from", "subject", "contacts")
    for row in rows:
        table.add_row(
            row["id"],
            (row["occurred_at"] or "")[:16],
            row["kind"],
            row["direction"][:3],
            row["owner"],
            row["from"]["address"],
            row["subject"],
            ", ".join(row["contacts"]),
        )
    out.print(table)


@contacts_app.command("list")
def contacts_list(
    slug: str,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
) -> None:
    """List contacts."""
    store = open_store(settings())
    try:
        rows = store.contacts(slug)
    except StoreError as error:
        fail(str(error))
    if as_json:
        for row in rows:
            print_json(row)
        return
    table = Table("id", "name", "addresses", "company", "created by")
    for row in rows:
        table.add_row(
            str(row["id"]),
            row["name"] or "",
            ", ".join(row["addresses"]),
            row["company"] or "",
            row["created_by"],
        )
    out.print(table)


@app.command()
def events(
    slug: str,
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
) -> None:
    """Recent capture events: why each message was or was not logged."""
    store = open_store(settings())
    try:
        rows = store.events(slug, limit)
    except StoreError as error:
        fail(str(error))
    if as_json:
        for row in rows:
            print_json(row)
        return
    table = Table("received", "kind", "from", "subject", "decision", "reason", "reply")
    for row in rows:
        table.add_row(
            row["received_at"][:19],
            row["kind"] or "",
            row["mail_from"],
            row["subject"],
            row["decision"],
            row["reason"],
            row["smtp_reply"],
        )
    out.print(table)


def _target(store: Store, rcpt: str) -> CaptureTarget:
    target = store.resolve_capture_address(rcpt)
    if target is None:
        fail(f"{rcpt} is not a capture address of any account")
    return target


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        fail(f"cannot read {path}: {error.strerror or error}")


def decision_json(file: str, decision: Decision) -> dict[str, Any]:
    draft = decision.draft
    return {
        "file": file,
        "decision": decision.action.value,
        "reason": decision.reason.value,
        "smtp_reply": replies.for_decision(decision, "(dry-run)", "(dry-run)"),
        "engagement": draft.as_dict() if draft else None,
        "trace": [entry.as_dict() for entry in decision.trace],
    }


@app.command("dry-run")
def dry_run(
    files: Annotated[list[Path], typer.Argument(help=".eml files")],
    rcpt: Annotated[str, typer.Option("--rcpt", help="the capture address it was sent to")],
    mail_from: Annotated[
        str | None, typer.Option("--mail-from", help="envelope sender (default: the From)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one decision per line")] = False,
) -> None:
    """Run the whole pipeline on each file without writing anything."""
    current = settings()
    store = open_store(current)
    service = CaptureService(store, current)
    target = _target(store, rcpt)
    for path in files:
        raw = _read_file(path)
        envelope = _envelope(raw, rcpt, mail_from, "cli")
        try:
            decision = service.decide(CapturedMessage(envelope, target, raw))
        except StoreUnavailable as error:
            fail(f"the database is unavailable: {error}")
        if as_json:
            print_json(decision_json(str(path), decision))
            continue
        out.print(f"[bold]{path}[/]: {decision.action.value} ({decision.reason.value})")
        for entry in decision.trace:
            out.print(f"  {entry.stage:<13} {entry.outcome:<7} {entry.detail}", markup=False)


def _envelope(raw: bytes, rcpt: str, mail_from: str | None, protocol: str) -> Envelope:
    if mail_from is None:
        # Without an envelope, the From header stands in for it, as an MTA would have sent it.
        from capture_server.pipeline.parse import parse_message

        sender = parse_message(raw).email.sender
        mail_from = sender.address if sender else ""
    return Envelope(mail_from, rcpt, protocol, datetime.now(UTC))


def _messages(path: Path) -> Iterator[tuple[str, bytes]]:
    """(label, raw bytes) for a .eml file, a folder of them, an mbox or a Maildir."""
    if path.is_dir() and (path / "cur").is_dir() and (path / "new").is_dir():
        maildir = mailbox.Maildir(path, create=False)
        for key in sorted(maildir.keys()):
            yield f"{path}/{key}", maildir.get_bytes(key)
    elif path.is_dir():
        for item in sorted(path.rglob("*.eml")):
            yield str(item), item.read_bytes()
    elif path.is_file() and path.read_bytes()[:5] == b"From ":
        box = mailbox.mbox(path, create=False)
        for index, key in enumerate(box.keys()):
            yield f"{path}#{index + 1}", box.get_bytes(key)
    elif path.is_file():
        yield str(path), path.read_bytes()
    else:
        fail(f"{path} is not a file, a folder, an mbox or a Maildir")


@app.command()
def ingest(
    path: Annotated[Path, typer.Argument(help=".eml file, folder of .eml, mbox or Maildir")],
    rcpt: Annotated[str, typer.Option("--rcpt", help="the capture address to ingest as")],
    mail_from: Annotated[str | None, typer.Option("--mail-from")] = None,
) -> None:
    """Capture stored messages as if they had arrived by SMTP."""
    current = settings()
    configure_logging(current.log_format, "warning")
    store = open_store(current)
    service = CaptureService(store, current)
    target = _target(store, rcpt)
    items = list(_messages(path))
    summary: Counter[tuple[str, str]] = Counter()
    progress = Progress(
        TextColumn("ingest"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=err, disable=not err.is_terminal,
    )  # fmt: skip
    with progress:
        task = progress.add_task("ingest", total=len(items))
        for _label, raw in items:
            envelope = _envelope(raw, rcpt, mail_from, "cli")
            try:
                outcome = service.capture(raw, envelope, target)
            except StoreUnavailable as error:
                fail(f"the database is unavailable: {error}")
            decision = outcome.decision
            key = (decision.action.value, decision.reason.value) if decision else ("held", "")
            summary[key] += 1
            progress.advance(task)
    table = Table("decision", "reason", "messages")
    for (action, reason), count in sorted(summary.items()):
        table.add_row(action, reason, str(count))
    out.print(table)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
