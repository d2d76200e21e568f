"""Messages that crashed the pipeline: list, show, drop, and replay them after a fix."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from rich.table import Table

from capture_server.capture import CaptureService
from capture_server.cli.archive import replay_archive
from capture_server.cli.common import app, fail, open_store, out, print_json, settings
from capture_server.logging import configure_logging
from capture_server.pipeline.message import Envelope
from capture_server.spool import Quarantine
from capture_server.store.repositories import StoreUnavailable

quarantine_app = typer.Typer(help="Messages held because the pipeline crashed on them.")
app.add_typer(quarantine_app, name="quarantine")


def _quarantine() -> Quarantine:
    return Quarantine(settings().quarantine_dir)


@quarantine_app.command("list")
def quarantine_list(
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
) -> None:
    """List held messages."""
    box = _quarantine()
    rows = [box.get(quarantine_id) for quarantine_id in box.ids()]
    if as_json:
        for held in rows:
            print_json({"id": held.id, **held.envelope, "size": len(held.raw)})
        return
    table = Table("id", "received", "from", "to", "error")
    for held in rows:
        meta = held.envelope
        table.add_row(held.id, meta["received_at"][:19], meta["mail_from"], meta["rcpt"],
                      held.error[:80])  # fmt: skip
    out.print(table)


@quarantine_app.command("show")
def quarantine_show(
    quarantine_id: Annotated[str, typer.Argument(help="q_… as in the reply or the list")],
) -> None:
    """Print a held message's envelope and raw bytes."""
    try:
        held = _quarantine().get(quarantine_id)
    except KeyError:
        fail(f"no quarantined message {quarantine_id!r}")
    for key, value in held.envelope.items():
        out.print(f"{key}: {value}", markup=False)
    out.print("")
    out.print(held.raw.decode("utf-8", "replace"), markup=False)


@quarantine_app.command("drop")
def quarantine_drop(
    quarantine_id: Annotated[str, typer.Argument(help="q_… as in the reply or the list")],
) -> None:
    """Delete a held message for good."""
    try:
        _quarantine().drop(quarantine_id)
    except FileNotFoundError:
        fail(f"no quarantined message {quarantine_id!r}")
    out.print(f"dropped {quarantine_id}")


@app.command()
def replay(
    ids: Annotated[list[str] | None, typer.Argument(help="quarantine ids; none: all")] = None,
    since: Annotated[
        str | None,
        typer.Option(help="replay the raw archive: messages received since DATE (ISO 8601)"),
    ] = None,
    account: Annotated[str | None, typer.Option(help="with --since: the account's slug")] = None,
    rebuild: Annotated[
        bool, typer.Option(help="with --since: delete and re-create existing engagements")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="with --since: one object each")] = False,
) -> None:
    """Run held messages through the pipeline again; each one that goes through is removed.

    With --since and --account: run the account's archived messages again under the current
    rules (see README, "Raw archive").
    """
    if since is not None or account is not None or rebuild or as_json:
        if since is None or account is None or ids:
            fail("replay from the archive takes --since DATE and --account SLUG, and no ids")
        replay_archive(since, account, rebuild=rebuild, as_json=as_json)
        return
    current = settings()
    configure_logging(current.log_format, "warning")
    store = open_store(current)
    service = CaptureService(store, current)
    box = service.quarantine
    wanted = ids or box.ids()
    failures = 0
    for quarantine_id in wanted:
        try:
            held = box.get(quarantine_id)
        except KeyError:
            fail(f"no quarantined message {quarantine_id!r}")
        meta = held.envelope
        target = store.resolve_capture_address(meta["rcpt"])
        if target is None:
            out.print(f"{quarantine_id}: {meta['rcpt']} is no longer a capture address; kept")
            failures += 1
            continue
        envelope = Envelope(
            mail_from=meta["mail_from"],
            rcpt=meta["rcpt"],
            protocol="replay",
            received_at=datetime.fromisoformat(meta["received_at"]),
            client_ip=meta.get("client_ip", ""),
            helo=meta.get("helo", ""),
        )
        try:
            evidence = service.gather_evidence_now(held.raw, envelope, target)
            outcome = service.capture(
                held.raw, envelope, target, evidence=evidence, quarantine_on_crash=False
            )
        except StoreUnavailable as error:
            fail(f"the database is unavailable: {error}")
        except Exception as error:
            out.print(f"{quarantine_id}: still fails ({type(error).__name__}: {error}); kept")
            failures += 1
            continue
        box.drop(quarantine_id)
        out.print(f"{quarantine_id}: {outcome.reply}", markup=False)
    if failures:
        raise typer.Exit(1)
