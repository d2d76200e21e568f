"""Raw archive: every accepted message kept whole, content-addressed, for replay later.

A file is named by the SHA-256 of its bytes, so a message that arrives twice (a retry, two
capture addresses) is stored once. Writes are durable like the quarantine's (temporary file,
fsync, rename, fsync the folder) and happen before the store commits, so with the archive on
no message is acknowledged that the archive does not hold.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

_KEY = re.compile(r"^[0-9a-f]{64}$")


class ArchiveError(OSError):
    """The archive could not take a message (disk full, permissions): answer 451."""


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
        key = hashlib.sha256(raw).hexdigest()
        path = self.path(key)
        try:
            if path.is_file():
                os.utime(path)  # referenced again: purge's first filter is the file time
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
        if not path.is_file():
            raise KeyError(key)
        return path.read_bytes()

    def older_than(self, cutoff: float) -> Iterator[tuple[str, Path]]:
        """(key, path) of every archived file last written before cutoff (a Unix time)."""
        if not self.folder.is_dir():
            return
        for path in sorted(self.folder.glob("??/*.eml")):
            if _KEY.match(path.stem) and path.stat().st_mtime < cutoff:
                yield path.stem, path


def retention_cutoff(days: float) -> float:
    return time.time() - days * 86400


def _fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
