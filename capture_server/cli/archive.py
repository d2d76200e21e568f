"""The raw archive: purge past retention, and replay an account's messages after a rule change."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from capture_server.archive import RawArchive
from capture_server.archive_purge import purge_expired
from capture_server.capture import CaptureService
from capture_server.cli.common import app, fail, open_store, out, print_json, settings
from capture_server.config import Settings
from capture_server.logging import configure_logging
from capture_server.replay import replay_archived
from capture_server.store.archived import archived_events
from capture_server.store.repositories import StoreError, StoreUnavailable

archive_app = typer.Typer(help="The raw archive of accepted messages (archive_dir).")
app.add_typer(archive_app, name="archive")


def _archive(current: Settings) -> RawArchive:
    if not current.archive_dir:
        fail("the raw archive is off: set archive_dir (CAPTURE_SERVER_ARCHIVE_DIR)")
    return RawArchive(Path(current.archive_dir))


@archive_app.command("purge")
def archive_purge(
    older_than: Annotated[
        float | None,
        typer.Option("--older-than", min=0, help="days; default: archive_retention_days"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object")] = False,
) -> None:
    """Delete archived messages older than the retention that no younger event refers to."""
    current = settings()
    configure_logging(current.log_format, "warning")
    archive = _archive(current)
    days = current.archive_retention_days if older_than is None else older_than
    if older_than is None and days == 0:
        if as_json:  # scripts parse the same object; no age: nothing is old enough
            print_json({"purged": 0, "kept": 0, "older_than_days": None})
        else:
            out.print("archive_retention_days is 0 (keep forever): nothing purged")
        return
    store = open_store(current)
    try:
        # Safe while the daemon (its own purge job, put()) runs: see capture_server/archive.py.
        done = purge_expired(store, archive, days)
    except StoreUnavailable as error:
        fail(f"the database is unavailable: {error}")
    purged = done.purged
    report = {"purged": purged, "kept": done.kept, "older_than_days": days}
    if as_json:
        print_json(report)
    else:
        out.print(
            f"purged {purged} archived message(s) older than {days:g} days; "
            f"kept {report['kept']} a younger capture event refers to"
        )


def parse_since(value: str) -> datetime:
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        fail(f"--since {value!r} is not a date (YYYY-MM-DD or ISO 8601)")
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def replay_archive(since: str, slug: str, *, rebuild: bool, as_json: bool) -> None:
    """`replay --since DATE --account SLUG`: see capture_server/replay.py for the meaning."""
    current = settings()
    configure_logging(current.log_format, "warning")
    archive = _archive(current)
    when = parse_since(since)
    store = open_store(current)
    service = CaptureService(store, current)
    try:
        events = archived_events(store, slug, when)
    except StoreError as error:
        fail(str(error))
    except StoreUnavailable as error:
        fail(f"the database is unavailable: {error}")
    counts: Counter[str] = Counter()
    for archived in events:
        try:
            done = replay_archived(service, archive, archived, slug, rebuild=rebuild)
        except StoreUnavailable as error:
            fail(f"the database is unavailable: {error}")
        except Exception as error:
            # A pipeline bug on one message must not stop the others; it is said and counted.
            counts["failed"] += 1
            out.print(f"{archived.event_id}: fails ({type(error).__name__}: {error})",
                      markup=False)  # fmt: skip
            continue
        counts[done.reason if done.decision != "log" else "logged"] += 1
        if as_json:
            print_json(done.as_dict())
        elif done.decision == "missing":
            out.print(f"{archived.event_id}: archived message purged, skipped")
        else:
            old = done.deleted_engagement_id
            replaced = f" (replaces {old})" if old else ""
            out.print(f"{archived.event_id}: {done.reply}{replaced}", markup=False)
    if not as_json:
        summary = ", ".join(f"{count} {reason}" for reason, count in sorted(counts.items()))
        out.print(f"replayed {len(events)} archived message(s) since {when.isoformat()}"
                  + (f": {summary}" if summary else ""))  # fmt: skip
    if counts["failed"] or counts["archive_purged"]:
        raise typer.Exit(1)
