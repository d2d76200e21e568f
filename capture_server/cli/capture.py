"""Capturing and reading: dry-run, ingest, engagements, contacts (events: cli/admin.py)."""

from __future__ import annotations

import mailbox
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text
from structlog.contextvars import bound_contextvars

from capture_server.capture import CaptureService
from capture_server.cli.common import (
    SlugArg,
    app,
    contacts_app,
    engagements_app,
    err,
    fail,
    open_store,
    out,
    print_json,
    settings,
    with_store,
)
from capture_server.logging import configure_logging
from capture_server.pipeline.message import (
    Action,
    CapturedMessage,
    CaptureTarget,
    Decision,
    Envelope,
    Reason,
    TraceEntry,
)
from capture_server.received import received_keys
from capture_server.smtp import replies
from capture_server.store.operations import already_stored, existing_contacts
from capture_server.store.repositories import Store, StoreUnavailable, new_id


@engagements_app.command("list")
def engagements_list(
    slug: SlugArg,
    thread: Annotated[str | None, typer.Option(help="only this thread id")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
) -> None:
    """List logged emails."""
    rows = with_store(lambda store: store.engagements(slug, thread_id=thread))
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
    slug: SlugArg,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
    show_all: Annotated[
        bool, typer.Option("--all", help="also soft-deleted contacts (with deleted_at)")
    ] = False,
) -> None:
    """List contacts."""
    rows = with_store(lambda store: store.contacts(slug, include_deleted=show_all))
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


def decision_json(file: str, decision: Decision, existing: set[str] | None = None
                  ) -> dict[str, Any]:  # fmt: skip
    """existing: the draft's contacts that already exist, when its contact policy lets it
    associate only those (contacts then lists them, contacts_not_created the others)."""
    draft = decision.draft
    engagement = draft.as_dict() if draft else None
    if engagement is not None and existing is not None:
        participants = engagement["contacts"]
        engagement["contacts"] = [key for key in participants if key in existing]
        engagement["contacts_not_created"] = [key for key in participants if key not in existing]
    return {
        "file": file,
        "decision": decision.action.value,
        "reason": decision.reason.value,
        "smtp_reply": replies.for_decision(decision, "(dry-run)", "dry-run"),
        "engagement": engagement,
        "trace": [entry.as_dict() for entry in decision.trace],
        "authentication": decision.authentication.as_dict() if decision.authentication else None,
    }


@app.command("dry-run")
def dry_run(
    files: Annotated[list[Path], typer.Argument(help=".eml files")],
    rcpt: Annotated[str, typer.Option("--rcpt", help="the capture address it was sent to")],
    mail_from: Annotated[
        str | None, typer.Option("--mail-from", help="envelope sender (default: the From)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one decision per line")] = False,
    client_ip: Annotated[
        str, typer.Option("--client-ip", help="the connecting client, for SPF (default: none)")
    ] = "",
    helo: Annotated[str, typer.Option("--helo", help="the client's HELO name, for SPF")] = "",
) -> None:
    """Run the whole pipeline on each file without writing anything (DNS is still asked)."""
    current = settings()
    store = open_store(current)
    service = CaptureService(store, current)
    target = _target(store, rcpt)
    for path in files:
        raw = _read_file(path)
        existing = None
        decision = _too_large(raw, current.max_message_bytes)
        if decision is None:
            envelope = replace(
                _envelope(raw, rcpt, mail_from, "cli"), client_ip=client_ip, helo=helo
            )
            try:
                evidence = service.gather_evidence_now(raw, envelope, target)
                decision = service.decide(CapturedMessage(envelope, target, raw, evidence))
                draft = decision.draft
                # A policy that creates no contacts associates the existing ones only: say which.
                existing = None if draft is None or draft.create_contacts else existing_contacts(
                    store, target.account_id, [mailbox.key for mailbox in draft.contacts]
                )  # fmt: skip
            except StoreUnavailable as error:
                fail(f"the database is unavailable: {error}")
        if as_json:
            print_json(decision_json(str(path), decision, existing))
            continue
        out.print(
            f"[bold]{escape(str(path))}[/]: {decision.action.value} ({decision.reason.value})",
            markup=True,
        )
        for entry in decision.trace:
            out.print(f"  {entry.stage:<13} {entry.outcome:<7} {entry.detail}", markup=False)


def _too_large(raw: bytes, limit: int) -> Decision | None:
    """Above max_message_bytes the daemon answers 552 5.3.4 at DATA, before any pipeline or
    capture event: dry-run and ingest decide the same."""
    if len(raw) <= limit:
        return None
    detail = f"message of {len(raw)} bytes is over max_message_bytes ({limit})"
    return Decision(
        Action.REJECT, Reason.MESSAGE_TOO_LARGE, (TraceEntry("size", "reject", detail),)
    )


def _envelope(raw: bytes, rcpt: str, mail_from: str | None, protocol: str) -> Envelope:
    if mail_from is None:
        # Without an envelope, the From header stands in for it, as an MTA would have sent it.
        from capture_server.pipeline.parse import parse_message

        sender = parse_message(raw).email.sender
        mail_from = sender.address if sender else ""
    return Envelope(mail_from, rcpt, protocol, datetime.now(UTC))


def _messages(path: Path) -> list[tuple[str, Callable[[], bytes]]]:
    """(label, reader) for a .eml file, a folder of them, an mbox or a Maildir.

    Messages are read one at a time while ingesting, so a large mailbox is never all in memory.
    """
    try:
        if path.is_dir() and (path / "cur").is_dir() and (path / "new").is_dir():
            maildir = mailbox.Maildir(path, create=False)
            return [
                (f"{path}/{key}", partial(maildir.get_bytes, key)) for key in sorted(maildir.keys())
            ]
        if path.is_dir():
            return [(str(item), item.read_bytes) for item in sorted(path.rglob("*.eml"))]
        if path.is_file():
            with path.open("rb") as handle:
                is_mbox = handle.read(5) == b"From "
            if not is_mbox:
                return [(str(path), path.read_bytes)]
            box = mailbox.mbox(path, create=False)
            return [
                (f"{path}#{index + 1}", partial(box.get_bytes, key))
                for index, key in enumerate(box.keys())
            ]
    except (OSError, mailbox.Error) as error:
        fail(f"cannot read {path}: {getattr(error, 'strerror', None) or error}")
    if not path.exists():
        fail(f"cannot read {path}: no such file or folder")
    fail(f"{path} is not a file, a folder, an mbox or a Maildir")


class RateColumn(ProgressColumn):
    """Messages per second (rich's speed column counts bytes)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.1f} msg/s" if speed else "- msg/s")


SKIPPED = ("skipped", "already stored")
UNREADABLE = ("error", "unreadable")


@app.command()
def ingest(
    path: Annotated[Path, typer.Argument(help=".eml file, folder of .eml, mbox or Maildir")],
    rcpt: Annotated[str, typer.Option("--rcpt", help="the capture address to ingest as")],
    mail_from: Annotated[
        str | None, typer.Option("--mail-from", help="envelope sender (default: each From)")
    ] = None,
    dry: Annotated[
        bool,
        typer.Option("--dry-run", help="decide each message without writing; print the summary"),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="the summary as one JSON object")] = False,
) -> None:
    """Capture stored messages as if they had arrived by SMTP.

    Resumable: a message whose Message-ID is already an engagement or a capture event of the
    account, or one without a Message-ID whose very bytes already are a capture event of it,
    is skipped before the pipeline ("skipped: already stored"), so an interrupted import can
    simply be run again.
    """
    current = settings()
    configure_logging(current.log_format, "warning")
    store = open_store(current)
    service = CaptureService(store, current)
    target = _target(store, rcpt)
    items = _messages(path)
    summary: Counter[tuple[str, str]] = Counter()
    progress = Progress(
        TextColumn("dry-run" if dry else "ingest"), BarColumn(), MofNCompleteColumn(),
        RateColumn(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
        console=err, disable=not err.is_terminal,
    )  # fmt: skip
    with progress:
        task = progress.add_task("ingest", total=len(items))
        for label, read in items:
            summary[_ingest_one(service, target, label, read, rcpt, mail_from, dry)] += 1
            progress.advance(task)
    rows: list[dict[str, Any]] = [
        {"decision": action, "reason": reason, "messages": count}
        for (action, reason), count in sorted(summary.items())
    ]
    if as_json:
        print_json(
            {
                "path": str(path),
                "dry_run": dry,
                "messages": len(items),
                "skipped_already_stored": summary[SKIPPED],
                "summary": rows,
            }
        )
        return
    title = "dry-run: nothing written" if dry else None
    table = Table("decision", "reason", "messages", title=title)
    for (action, reason), count in sorted(summary.items()):
        table.add_row(action, reason, str(count))
    out.print(table)


def _ingest_one(
    service: CaptureService,
    target: CaptureTarget,
    label: str,
    read: Callable[[], bytes],
    rcpt: str,
    mail_from: str | None,
    dry: bool,
) -> tuple[str, str]:
    """One stored message: (decision, reason) for the summary."""
    try:
        raw = read()
    except (OSError, KeyError, mailbox.Error) as error:
        err.print(f"cannot read {label}: {getattr(error, 'strerror', None) or error}", markup=False)
        return UNREADABLE
    too_large = _too_large(raw, service.settings.max_message_bytes)
    if too_large is not None:
        err.print(f"{label}: {too_large.trace[0].detail}; not ingested", markup=False)
        return too_large.action.value, too_large.reason.value
    try:
        # By its Message-ID; one without is known by its bytes (the event's raw_sha256).
        message_id = received_keys(raw).message_id
        if already_stored(service.store, target.account_id, message_id, raw):
            return SKIPPED
        envelope = _envelope(raw, rcpt, mail_from, "cli")
        evidence = service.gather_evidence_now(raw, envelope, target)
        if dry:
            decision: Decision | None = service.decide(
                CapturedMessage(envelope, target, raw, evidence)
            )
        else:
            event_id = new_id("evt")  # in the log lines of this message, as in the daemon
            with bound_contextvars(event_id=event_id):
                outcome = service.capture(
                    raw, envelope, target, evidence=evidence, event_id=event_id
                )
            decision = outcome.decision
    except StoreUnavailable as error:
        fail(f"the database is unavailable: {error}")
    return (decision.action.value, decision.reason.value) if decision else ("held", "")
