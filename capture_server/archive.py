"""Raw archive: every accepted message kept whole, content-addressed, for replay later.

A file is named by the SHA-256 of its bytes, so a message that arrives twice (a retry, two
capture addresses) is stored once. Writes are durable like the quarantine's (temporary file,
fsync, rename, fsync the folder) and happen before the store commits, so with the archive on
no message is acknowledged that the archive does not hold.

Purge (`archive purge`, and the daemon every `archive_purge_hours`: archive_purge.py)
deletes a file older than the retention that no younger capture event refers to. The file
time is the lock-free signal between put() and purge, which run in several processes at
once (daemon workers, `ingest`, the CLI purge, other nodes on a shared folder):

- put(): a file already there has its time refreshed (utime), then put() checks that the
  name still exists; a file that is missing at either step is written again (temporary
  file, rename). So when put() returns, `<key>.eml` names a file whose time is no older
  than the put() began: refreshed before the check, or written (or put back) after it.
- purge, for each file older than the cutoff (now - retention) that the database query
  found no younger event for:
  1. rename `<key>.eml` to a tombstone `.<key>.<random>.purging` in the same folder
     (atomic; a file already gone: another purge took it, skipped);
  2. stat the tombstone: a time at or after the cutoff means a put() refreshed it since the
     listing: it is put back (hard link to `<key>.eml` unless a fresh copy is there already,
     then the tombstone is removed); else
  3. unlink the tombstone.

Why a put() racing a purge never loses its file (an event is committed only after its
put() returned, so what that event refers to is what put() left):

- put() refreshes before the rename (1): step 2 sees the new time and puts the file back.
- put() refreshes after the rename: the name is gone, utime fails, the file is written anew.
- the kernel's own window: utime looks the name up, the rename (1) moves the file, utime
  then sets the time of the tombstone, possibly after step 2 read it, so step 3 deletes it.
  put()'s second check sees the name missing and writes the file again. If instead the
  check finds a file, either step 1 has not happened yet (the time was set before it, so
  step 2 sees it), or it is a copy written or put back after step 1, whose time is new.
- put() writes a new file (none was there): it is younger than the cutoff; if a purge
  renames it, step 2 puts it back. A put() that renames its temporary file onto the name
  never replaces anything but the same bytes.
- two purges (the daemon's worker 0 and the CLI, or two nodes): step 1 moves a file once;
  the other gets "not found". A tombstone is unlinked only by the purge that made it.
- the event was committed before the purge's query: the query keeps the file. An event
  committed after the query belongs to a put() of this run, covered above.
- a purge killed between steps 1 and 3 leaves a tombstone: the next purge (recover())
  links it back when the name is free, then purges it normally if it is still old and
  unreferenced. Putting back never replaces a file, so it never undoes a refresh, and
  links rather than renames so that a live purge working on the same tombstone only
  finds it gone. get() reads a tombstone while its file is being decided on.

A put() that crashed between writing its temporary file and the rename leaves
`.<key>.<random>.tmp`; each purge removes those older than a day (a live put() renames its
file within seconds).

What is not covered: a retention shorter than the time from put() to the commit (seconds;
`--older-than 0` deletes everything, as asked), and clocks that disagree on a folder shared
between hosts by more than the retention.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

_KEY = re.compile(r"^[0-9a-f]{64}$")
_TOMBSTONE = re.compile(r"^\.([0-9a-f]{64})\.[0-9a-f]+\.purging$")

Outcome = Literal["purged", "refreshed", "vanished"]
TEMPORARY_GRACE_SECONDS = 86400.0  # a put()'s temporary file older than this was abandoned
# Called between purge steps with the step's name and the key: tests hold a purge there.
Hook = Callable[[str, str], None]


class ArchiveError(OSError):
    """The archive could not take a message (disk full, permissions): answer 451."""


@dataclass
class PurgeReport:
    """What one purge did. kept = candidates - purged (referenced, refreshed, vanished)."""

    older_than_days: float
    candidates: int = 0  # files older than the cutoff
    purged: int = 0
    referenced: int = 0  # kept: a younger capture event refers to them
    refreshed: int = 0  # kept: stored again while the purge ran
    vanished: int = 0  # gone meanwhile (another purge)
    recovered: int = 0  # tombstones of an interrupted purge put back first
    stale_temporaries: int = 0  # half-written files of a put() that crashed, removed
    interrupted: bool = False  # stopped early (the daemon shutting down)
    seconds: float = 0.0

    @property
    def kept(self) -> int:
        return self.candidates - self.purged

    def as_dict(self) -> dict[str, float | int | bool]:
        return {**asdict(self), "kept": self.kept}


class RawArchive:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, key: str) -> Path:
        if not _KEY.match(key):
            raise KeyError(key)
        # Two-character fan-out keeps folders small (git's object store does the same).
        return self.folder / key[:2] / f"{key}.eml"

    def put(self, raw: bytes) -> str:
        """Store raw durably; its key. An existing copy is kept and its time refreshed."""
        key = raw_key(raw)
        path = self.path(key)
        try:
            if _refresh(path):
                return key
            created = not path.parent.is_dir()
            path.parent.mkdir(parents=True, exist_ok=True)
            if created:
                _fsync_folder(path.parent.parent)
            # A unique temporary name: two sessions may store the same message at once.
            temporary = path.parent / f".{key}.{secrets.token_hex(4)}.tmp"
            with temporary.open("wb") as handle:
                handle.write(raw)
                handle.flush()
                os.fsync(handle.fileno())
            temporary.replace(path)
            _fsync_folder(path.parent)
        except OSError as error:
            raise ArchiveError(f"cannot archive the message in {self.folder}: {error}") from error
        return key

    def get(self, key: str) -> bytes:
        path = self.path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            pass
        for tombstone in self._tombstones(key):  # a purge is deciding on it right now
            try:
                return tombstone.read_bytes()
            except FileNotFoundError:
                continue
        raise KeyError(key)

    def older_than(self, cutoff: float) -> Iterator[tuple[str, Path]]:
        """(key, path) of every archived file last written before cutoff (a Unix time)."""
        if not self.folder.is_dir():
            return
        for path in sorted(self.folder.glob("??/*.eml")):
            try:
                old = path.stat().st_mtime < cutoff
            except FileNotFoundError:
                continue  # purged meanwhile by someone else
            if old and _KEY.match(path.stem):
                yield path.stem, path

    def purge(
        self,
        days: float,
        referenced: Callable[[list[str], float], set[str]],
        *,
        stop: Callable[[], bool] | None = None,
        hook: Hook | None = None,
    ) -> PurgeReport:
        """Delete files last written more than `days` ago that referenced(keys, cutoff) does
        not name (the keys a capture event received since the cutoff refers to): the module
        docstring says why this is safe against put() in other threads and processes."""
        started = time.monotonic()
        report = PurgeReport(older_than_days=days)
        report.recovered = self.recover()
        report.stale_temporaries = self.remove_stale_temporaries()
        cutoff = retention_cutoff(days)
        candidates = dict(self.older_than(cutoff))
        report.candidates = len(candidates)
        in_use = referenced(list(candidates), cutoff) if candidates else set()
        for key, path in candidates.items():
            if stop is not None and stop():
                report.interrupted = True
                break
            if key in in_use:
                report.referenced += 1
                continue
            outcome = self.expire(key, path, cutoff, hook)
            if outcome == "purged":
                report.purged += 1
            elif outcome == "refreshed":
                report.refreshed += 1
            else:
                report.vanished += 1
        report.seconds = round(time.monotonic() - started, 3)
        return report

    def expire(self, key: str, path: Path, cutoff: float, hook: Hook | None = None) -> Outcome:
        """Steps 1-3 of the purge for one file no younger event refers to."""
        tombstone = path.parent / f".{key}.{secrets.token_hex(4)}.purging"
        try:
            os.rename(path, tombstone)
        except FileNotFoundError:
            return "vanished"
        if hook is not None:
            hook("renamed", key)
        try:
            fresh = tombstone.stat().st_mtime >= cutoff
        except FileNotFoundError:
            return "vanished"  # another purge's recover() put it back
        if hook is not None:
            hook("checked", key)
        if fresh:
            _put_back(tombstone, path)
            return "refreshed"
        try:
            tombstone.unlink()
        except FileNotFoundError:
            return "vanished"
        return "purged"

    def recover(self) -> int:
        """Put back the tombstones an interrupted purge left (the next purge decides again)."""
        if not self.folder.is_dir():
            return 0
        recovered = 0
        for tombstone in sorted(self.folder.glob("??/.*.purging")):
            found = _TOMBSTONE.match(tombstone.name)
            if found and _put_back(tombstone, self.path(found.group(1))):
                recovered += 1
        return recovered

    def remove_stale_temporaries(self, grace: float = TEMPORARY_GRACE_SECONDS) -> int:
        """Remove the temporary files of put()s that crashed before their rename: a live put()
        renames its file within seconds, so one older than `grace` is nobody's."""
        if not self.folder.is_dir():
            return 0
        removed = 0
        cutoff = time.time() - grace
        for temporary in self.folder.glob("??/.*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                if temporary.stat().st_mtime < cutoff:
                    temporary.unlink()
                    removed += 1
        return removed

    def _tombstones(self, key: str) -> Iterable[Path]:
        return self.path(key).parent.glob(f".{key}.*.purging")


def raw_key(raw: bytes) -> str:
    """A raw message's key: its SHA-256 in hex. The archive's file name, and what a capture
    event without a Message-ID keeps (raw_sha256; migration 0013 counts on the two agreeing)."""
    return hashlib.sha256(raw).hexdigest()


def retention_cutoff(days: float) -> float:
    return time.time() - days * 86400


def _refresh(path: Path) -> bool:
    """Refresh an archived file's time; False when it is not there (to be written)."""
    try:
        os.utime(path)  # referenced again: purge's filter is the file time
    except FileNotFoundError:
        return False
    # Still there after the refresh: a purge may have renamed it between utime's look-up
    # and its update of the time (module docstring).
    return path.is_file()


def _put_back(tombstone: Path, path: Path) -> bool:
    """Give a tombstone its name again unless a copy is there (the same bytes): never
    replaces a file. False when the tombstone was gone already."""
    try:
        os.link(tombstone, path)
    except FileExistsError:
        pass
    except FileNotFoundError:
        return False
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        # No hard links on this file system: rename, which may replace a fresh copy with
        # this one; its time is refreshed first so the replacement is as young.
        try:
            os.utime(tombstone)
            os.replace(tombstone, path)
        except FileNotFoundError:
            return False
        return True
    with contextlib.suppress(FileNotFoundError):
        tombstone.unlink()  # a recover() elsewhere did it
    return True


def _fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
