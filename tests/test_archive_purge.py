"""Archive retention: the purge protocol against put() racing it (deterministically, at each
step), and the daemon's own purge job (worker 0 only, retention 0 and period 0, SIGTERM)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
import structlog

from capture_server import archive_purge
from capture_server.archive import RawArchive
from capture_server.config import Settings
from capture_server.logging import configure_logging
from capture_server.store.db import make_engine, migrate
from capture_server.store.repositories import Store
from tests.conftest import Cli, RunningDaemon, make_account, start_daemon
from tests.test_archive import archived_files, message

TEN_DAYS_AGO = time.time() - 10 * 86400
RAW = b"Subject: racing\r\n\r\nthe same bytes, stored again while a purge runs\r\n"


def age(path: Path, when: float = TEN_DAYS_AGO) -> None:
    os.utime(path, (when, when))


def nobody(_keys: list[str], _cutoff: float) -> set[str]:
    return set()


def tombstones(folder: Path) -> list[Path]:
    return list(folder.glob("??/.*.purging"))


@pytest.fixture
def archive(tmp_path: Path) -> RawArchive:
    return RawArchive(tmp_path / "archive")


def old_file(archive: RawArchive) -> tuple[str, Path]:
    key = archive.put(RAW)
    path = archive.path(key)
    age(path)
    return key, path


# -- the protocol, one interleaving at a time ---------------------------------------------


def test_put_after_the_listing_and_before_the_rename_is_put_back(archive: RawArchive) -> None:
    key, path = old_file(archive)

    def stored_again_meanwhile(keys: list[str], _cutoff: float) -> set[str]:
        assert keys == [key]  # listed as old; the database knows no event yet
        assert archive.put(RAW) == key  # refreshes the time
        return set()

    report = archive.purge(5, stored_again_meanwhile)
    assert (report.candidates, report.purged, report.refreshed) == (1, 0, 1)
    assert path.read_bytes() == RAW and not tombstones(archive.folder)


@pytest.mark.parametrize("step", ["renamed", "checked"])
def test_put_while_the_file_is_a_tombstone_writes_it_again(archive: RawArchive, step: str) -> None:
    """The old race: put() between purge's check and its delete. The name is gone, so
    put() writes a fresh copy, which the delete of the tombstone does not touch."""
    key, path = old_file(archive)
    seen: list[str] = []

    def put_now(at: str, which: str) -> None:
        if at == step:
            assert not path.exists() and len(tombstones(archive.folder)) == 1
            assert archive.get(which) == RAW  # a replay meanwhile still reads it
            assert archive.put(RAW) == key
            seen.append(at)

    report = archive.purge(5, nobody, hook=put_now)
    assert seen == [step]
    # The old copy is deleted or put back; a copy is at the name in both cases.
    assert report.purged + report.refreshed == 1
    assert path.read_bytes() == RAW and path.stat().st_mtime > time.time() - 60
    assert not tombstones(archive.folder)


def test_refresh_landing_on_the_tombstone_after_the_check_is_caught_by_put(
    archive: RawArchive, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kernel's window: utime looks the name up, a whole purge step runs (rename,
    check: old, unlink), then utime sets the time of the now deleted file and succeeds.
    put() looks again and writes the file anew."""
    key, path = old_file(archive)
    real_utime = os.utime
    purged: list[str] = []

    def utime_racing_a_purge(target: Any, *args: Any, **kwargs: Any) -> None:
        if Path(target) != path or purged:
            return real_utime(target, *args, **kwargs)
        descriptor = os.open(target, os.O_RDONLY)  # the look-up
        try:
            purged.append(archive.expire(key, path, time.time() - 5 * 86400))
            real_utime(descriptor)  # the update, on the deleted inode
        finally:
            os.close(descriptor)
        return None

    monkeypatch.setattr(os, "utime", utime_racing_a_purge)
    assert archive.put(RAW) == key
    assert purged == ["purged"]
    assert path.read_bytes() == RAW


def test_two_purges_at_once_delete_once_and_never_fail(archive: RawArchive) -> None:
    _key, path = old_file(archive)
    other = RawArchive(archive.folder)
    inner: list[Any] = []

    def second_purge(at: str, _key: str) -> None:
        if at == "renamed" and not inner:
            inner.append(other.purge(5, nobody))  # finds the first one's tombstone

    first = archive.purge(5, nobody, hook=second_purge)
    (second,) = inner
    # The second put the tombstone back (never deletes what it did not rename), then
    # purged the file itself; the first found its tombstone gone.
    assert (second.recovered, second.purged) == (1, 1)
    assert (first.purged, first.vanished) == (0, 1)
    assert not path.exists() and not tombstones(archive.folder)


def test_an_interrupted_purge_is_recovered_without_replacing_a_fresh_copy(
    archive: RawArchive,
) -> None:
    key, path = old_file(archive)
    tombstone = path.parent / f".{key}.0badc0de.purging"
    os.rename(path, tombstone)  # a purge killed after step 1
    assert archive.get(key) == RAW
    report = archive.purge(5, lambda keys, _cutoff: set(keys))  # a young event refers to it
    assert (report.recovered, report.referenced, report.purged) == (1, 1, 0)
    assert path.read_bytes() == RAW and not tombstones(archive.folder)

    # A fresh copy was written after the crash: recovering leaves it (and its time) alone.
    os.rename(path, tombstone)
    archive.put(RAW)
    fresh = path.stat()
    assert archive.recover() == 1
    assert path.stat().st_ino == fresh.st_ino and path.stat().st_mtime == fresh.st_mtime
    assert not tombstones(archive.folder)


def test_stop_interrupts_between_files(archive: RawArchive) -> None:
    for n in range(3):
        age(archive.path(archive.put(RAW + str(n).encode())))
    report = archive.purge(5, nobody, stop=lambda: True)
    assert report.interrupted and report.purged == 0 and len(archived_files(archive.folder)) == 3


# -- the daemon's job -------------------------------------------------------------------


def wait_for(daemon: RunningDaemon, name: str, count: int = 1, timeout: float = 30) -> list[Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = daemon.events(name)
        if len(found) >= count:
            return found
        assert daemon.process.poll() is None, daemon.log()
        time.sleep(0.05)
    raise AssertionError(f"no {count} {name}:\n{daemon.log()}")


def archive_with_one_referenced_and_one_orphan(cli: Cli, folder: Path) -> tuple[Path, Path]:
    """Both files ten days old; a capture event received now refers to the first."""
    account = make_account(cli)
    eml = folder / "one.eml"
    eml.write_bytes(message("kept-by-event"))
    cli("ingest", "--rcpt", account.bcc, str(eml),
        env_extra={"CAPTURE_SERVER_ARCHIVE_DIR": str(folder / "archive")})  # fmt: skip
    (referenced,) = (folder / "archive").glob("??/*.eml")
    orphan = folder / "archive" / "ab" / ("ab" + "0" * 62 + ".eml")
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"Subject: orphan\r\n\r\n")
    age(referenced)
    age(orphan)
    return referenced, orphan


PURGE_SOON = {"archive_retention_days": "5", "archive_purge_hours": "0.0003"}  # ~1 s


def test_the_daemon_purges_by_itself_and_stops_on_sigterm(
    database_url: str, cli: Cli, tmp_path: Path
) -> None:
    referenced, orphan = archive_with_one_referenced_and_one_orphan(cli, tmp_path)
    daemon = start_daemon(
        database_url, tmp_path, archive_dir=str(tmp_path / "archive"), **PURGE_SOON
    )
    try:
        (run, again) = wait_for(daemon, "archive_purged", 2)[:2]  # at start-up, then again
    finally:
        assert daemon.stop() == 0
    assert (run["purged"], run["referenced"], run["candidates"]) == (1, 1, 2)
    assert again["purged"] == 0 and isinstance(run["seconds"], float)
    assert not orphan.exists() and referenced.exists()
    assert len(daemon.events("archive_purge_scheduled")) == 1
    assert not daemon.events("archive_purge_failed")


def test_only_worker_0_purges(sqlite_cli: Cli, tmp_path: Path) -> None:
    referenced, orphan = archive_with_one_referenced_and_one_orphan(sqlite_cli, tmp_path)
    daemon = start_daemon(
        sqlite_cli.database_url, tmp_path, workers="2",
        archive_dir=str(tmp_path / "archive"), **PURGE_SOON,
    )  # fmt: skip
    try:
        wait_for(daemon, "worker_ready", 2)
        runs = wait_for(daemon, "archive_purged", 3)
    finally:
        assert daemon.stop(timeout=60) == 0
    assert {run["worker"] for run in runs} == {0}
    assert [e["worker"] for e in daemon.events("archive_purge_scheduled")] == [0]
    assert sum(run["purged"] for run in runs) == 1
    assert not orphan.exists() and referenced.exists()


def test_retention_0_purges_nothing_and_period_0_runs_no_job(
    sqlite_cli: Cli, tmp_path: Path
) -> None:
    referenced, orphan = archive_with_one_referenced_and_one_orphan(sqlite_cli, tmp_path)
    folder = str(tmp_path / "archive")
    forever = start_daemon(
        sqlite_cli.database_url, tmp_path, archive_dir=folder, log_level="debug",
        archive_retention_days="0", archive_purge_hours="0.0003",
    )  # fmt: skip
    try:
        wait_for(forever, "archive_purge_skipped", 2)
    finally:
        assert forever.stop() == 0
    assert not forever.events("archive_purged") and orphan.exists()

    never = start_daemon(
        sqlite_cli.database_url, tmp_path, archive_dir=folder, archive_retention_days="5",
        archive_purge_hours="0",
    )  # fmt: skip
    try:
        time.sleep(1.5)  # what would be more than a period of the other daemon
    finally:
        assert never.stop() == 0
    assert not never.events("archive_purge_scheduled") and not never.events("archive_purged")
    assert orphan.exists() and referenced.exists()
    # The CLI purges what the daemon was told to leave to it.
    report = json.loads(sqlite_cli("archive", "purge", "--older-than", "5", "--json",
                                   env_extra={"CAPTURE_SERVER_ARCHIVE_DIR": folder}))  # fmt: skip
    assert report == {"purged": 1, "kept": 1, "older_than_days": 5.0}


def test_a_failing_purge_is_logged_and_tried_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In process: the database fails once; the job logs it, the next period purges, and
    cancelling (what the drain does on SIGTERM) ends it."""
    url = f"sqlite:///{tmp_path / 'c.db'}"
    engine = make_engine(url)
    migrate(engine)
    archive = RawArchive(tmp_path / "archive")
    age(archive.path(archive.put(RAW)))
    settings = Settings(database_url=url, archive_dir=str(archive.folder),
                        archive_retention_days=5, archive_purge_hours=0.0001)  # fmt: skip
    calls: list[int] = []
    real = archive_purge.keys_referenced_since

    def flaky(*args: Any) -> set[str]:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("database gone for a moment")
        return real(*args)

    monkeypatch.setattr(archive_purge, "keys_referenced_since", flaky)
    monkeypatch.setattr(archive_purge, "FIRST_RUN_SECONDS", 0.0)
    configure_logging("json", "info")  # a CLI test before may have left "warning"

    async def run() -> None:
        task = asyncio.create_task(
            archive_purge.purge_periodically(Store(engine), lambda: settings)
        )
        deadline = time.monotonic() + 20
        while archived_files(archive.folder) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    try:
        with structlog.testing.capture_logs() as logs:
            asyncio.run(run())
    finally:
        engine.dispose()
    names = [entry["event"] for entry in logs]
    assert names[0] == "archive_purge_scheduled"
    assert names[1] == "archive_purge_failed" and "database gone" in logs[1]["error"]
    assert "archive_purged" in names and not archived_files(archive.folder)


def test_a_crashed_puts_temporary_file_is_removed_after_a_day(tmp_path: Path) -> None:
    archive = RawArchive(tmp_path / "archive")
    key = archive.put(message(1))
    folder = archive.path(key).parent
    abandoned = folder / f".{'a' * 64}.0badf00d.tmp"  # a put() that died before its rename
    in_progress = folder / f".{'b' * 64}.0badf00d.tmp"  # a put() writing right now
    abandoned.write_bytes(b"half a mess")
    in_progress.write_bytes(b"half a mess")
    age(abandoned)
    report = archive.purge(365, nobody)
    assert report.stale_temporaries == 1
    assert not abandoned.exists() and in_progress.exists()
    assert archive.get(key) == message(1)
