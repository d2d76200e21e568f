"""Retention of the raw archive: one purge (`capture-server archive purge`) and the daemon's
job that runs it every `archive_purge_hours`.

The file protocol and why it is safe against put() in other processes: archive.py. Here: the
database side (which keys a younger capture event refers to) and the schedule. In a daemon
with several workers only worker 0 runs the job (daemon.py); a CLI purge may run at the same
time as the daemon's, or two nodes' on a shared folder: the protocol allows it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from capture_server.archive import Hook, PurgeReport, RawArchive
from capture_server.config import Settings
from capture_server.logging import get_logger
from capture_server.store.archived import keys_referenced_since
from capture_server.store.repositories import Store

log = get_logger("archive")

FIRST_RUN_SECONDS = 60.0  # after start-up (or one period, when shorter)


def purge_expired(
    store: Store,
    archive: RawArchive,
    days: float,
    *,
    stop: Callable[[], bool] | None = None,
    hook: Hook | None = None,
) -> PurgeReport:
    """Delete archived files older than `days` that no capture event received since then
    refers to. Raises StoreUnavailable when the database does not answer (nothing deleted)."""

    def referenced(keys: list[str], cutoff: float) -> set[str]:
        return keys_referenced_since(store, keys, datetime.fromtimestamp(cutoff, UTC))

    return archive.purge(days, referenced, stop=stop, hook=hook)


def purge_scheduled(settings: Settings) -> bool:
    """Whether the daemon runs the job (the worker-0 rule aside)."""
    return bool(settings.archive_dir) and settings.archive_purge_hours > 0


async def purge_periodically(store: Store, current: Callable[[], Settings]) -> None:
    """The daemon's job: a purge shortly after start-up, then every archive_purge_hours.

    The file and database work runs in a thread; a failure is logged and the next period
    tries again; cancelling (SIGTERM) stops a purge in progress between two files.
    `current` gives the daemon's settings of the moment: a SIGHUP changes the retention
    from the next run on (archive_dir and archive_purge_hours need a restart).
    """
    settings = current()
    archive = RawArchive(Path(settings.archive_dir))
    period = settings.archive_purge_hours * 3600
    first = min(FIRST_RUN_SECONDS, period)
    log.info("archive_purge_scheduled", every_hours=settings.archive_purge_hours,
             first_in_seconds=first, retention_days=settings.archive_retention_days)  # fmt: skip
    await asyncio.sleep(first)
    while True:
        stopping = threading.Event()
        try:
            await asyncio.to_thread(_purge_once, store, archive, current(), stopping.is_set)
        except asyncio.CancelledError:
            stopping.set()  # the thread ends at the next file
            raise
        await asyncio.sleep(period)


def _purge_once(
    store: Store, archive: RawArchive, settings: Settings, stop: Callable[[], bool]
) -> None:
    days = settings.archive_retention_days
    if days <= 0:
        log.debug("archive_purge_skipped", reason="archive_retention_days is 0 (keep forever)")
        return
    try:
        report = purge_expired(store, archive, days, stop=stop)
    except Exception as error:  # the daemon stays up; the next period tries again
        log.error("archive_purge_failed", error=f"{type(error).__name__}: {error}"[:500])
        return
    log.info("archive_purged", **report.as_dict())
