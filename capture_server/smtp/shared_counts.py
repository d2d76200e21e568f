"""Open sessions of the whole daemon, counted across worker processes (workers.py).

With `workers = N` the kernel spreads connections over the workers by a hash of the
client's address and port, not evenly: one worker counting 1/N of `max_connections_per_ip`
would refuse a client the daemon as a whole still has room for. So the supervisor creates
one small shared-memory region (a memfd), passes its descriptor to every worker (as it does
the listening sockets) and each worker maps it; `SessionGuard` (smtp/server.py) admits and
releases sessions here, so both limits are the daemon's, exactly.

Layout: a header (magic, workers, slots, a random hash key), then one total row and a
table of `slots` per-IP rows, open addressing with linear probing keyed by the client's
address as text (as `SessionGuard` keys it: exact, no two addresses share a row). A row
holds one count a worker (a column each): a worker's counts are its own, so when a worker
dies (a crash, kill -9) its column is zeroed (`reset`) by the supervisor when it reaps it
and by its replacement at start, and the daemon's counts are the sums over the columns.

Every read-modify-write holds `lockf` on the region's descriptor: a POSIX record lock is
owned by the process, so it excludes the other workers although they share one open file
description (`flock` would not: it is per open file description). A process that dies
holding it loses it. Hashing is keyed (blake2b, a key drawn by the supervisor): a client
choosing its addresses (an IPv6 /64) cannot make long probe chains.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import hashlib
import mmap
import os
import secrets
import struct
import tempfile
from collections.abc import Iterator

MAGIC = b"CSCOUNT1"
_HEADER = struct.Struct("<8sII16s")  # magic, workers, slots, hash key
_ROW_HEAD = struct.Struct("<IB59s")  # hash, key length (0: free), key: 64 bytes
KEY_BYTES = 59  # longer keys (no textual IP address is) are not shared: see `Admission`
MIN_SLOTS = 256
MAX_SLOTS = 1 << 16


class Admission(enum.Enum):
    ADMITTED = "admitted"
    # Admitted, counted in the total, but the address has no row: the table is full (more
    # distinct addresses with open sessions than slots: only if SIGHUP raised
    # max_connections well above its value at start, which sized the table) or the key is
    # too long. Such an address falls back to the worker-local share of its limit (1/N, as
    # before counts were shared: safe, a 421 at worst a little early); `release(ip,
    # shared=False)` ends such a session.
    UNSHARED = "unshared"
    TOO_MANY = "too_many"
    TOO_MANY_FROM_IP = "too_many_from_ip"


def slots_for(max_connections: int) -> int:
    """Rows for a daemon of `max_connections`: at most that many addresses have sessions
    open at once (the total is checked first); twice that keeps probe chains short."""
    slots = MIN_SLOTS
    while slots < 2 * max_connections and slots < MAX_SLOTS:
        slots *= 2
    return slots


class SharedCounts:
    """A view of the region from one process; `worker` is the column it counts in."""

    def __init__(self, fd: int, worker: int) -> None:
        self.fd = fd
        self.worker = worker
        size = os.fstat(fd).st_size
        self.map = mmap.mmap(fd, size)
        magic, self.workers, self.slots, self.key = _HEADER.unpack_from(self.map, 0)
        if magic != MAGIC or not 0 <= worker < self.workers:
            self.map.close()
            raise ValueError(f"not a counts region for worker {worker}")
        self.mask = self.slots - 1
        self.counts = struct.Struct(f"<{self.workers}I")
        self.totals_at = _HEADER.size
        self.rows_at = self.totals_at + self.counts.size
        self.row_size = _ROW_HEAD.size + self.counts.size
        self.column = 4 * worker  # offset of this worker's count in a row of counts

    @classmethod
    def create(cls, workers: int, slots: int) -> SharedCounts:
        """A new zeroed region (the supervisor); its descriptor is for `pass_fds`."""
        if slots & (slots - 1) or workers < 1:
            raise ValueError("slots is a power of two, workers at least 1")
        if hasattr(os, "memfd_create"):
            fd = os.memfd_create("capture-server-counts", os.MFD_CLOEXEC)
        else:  # not Linux: an unnamed file (SO_REUSEPORT spreading is Linux's anyway)
            with tempfile.TemporaryFile() as unnamed:
                fd = os.dup(unnamed.fileno())
        size = _HEADER.size + 4 * workers + slots * (_ROW_HEAD.size + 4 * workers)
        os.ftruncate(fd, size)  # reads as zeros: every row free, every count 0
        header = _HEADER.pack(MAGIC, workers, slots, secrets.token_bytes(16))
        os.pwrite(fd, header, 0)
        return cls(fd, 0)

    def close(self, close_fd: bool = False) -> None:
        self.map.close()
        if close_fd:
            os.close(self.fd)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fcntl.lockf(self.fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(self.fd, fcntl.LOCK_UN)

    def _hash(self, key: bytes) -> int:
        digest = hashlib.blake2b(key, digest_size=4, key=self.key).digest()
        return int.from_bytes(digest, "little")

    def _row(self, index: int) -> int:
        return self.rows_at + index * self.row_size

    def _find(self, key: bytes, hashed: int) -> tuple[int, bool]:
        """(row, True) where `key` is, else (the free row to put it in or -1 if none, False)."""
        index = hashed & self.mask
        for _ in range(self.slots):
            at = self._row(index)
            row_hash, length, row_key = _ROW_HEAD.unpack_from(self.map, at)
            if length == 0:
                return at, False
            if row_hash == hashed and row_key[:length] == key:
                return at, True
            index = (index + 1) & self.mask
        return -1, False

    def _sum(self, at: int) -> int:
        return sum(self.counts.unpack_from(self.map, at))

    def _add(self, at: int, delta: int) -> None:
        at += self.column
        (value,) = struct.unpack_from("<I", self.map, at)
        struct.pack_into("<I", self.map, at, max(value + delta, 0))

    def admit(
        self, ip: str, max_total: int, max_per_ip: int | None, local_ok: bool = True
    ) -> Admission:
        """Count a session of `ip` unless a limit is reached (max_per_ip None: none).
        `local_ok`: whether the worker-local fallback would admit it (see UNSHARED)."""
        key = ip.encode()
        hashed = self._hash(key) if len(key) <= KEY_BYTES else 0
        with self._locked():
            if self._sum(self.totals_at) >= max_total:
                return Admission.TOO_MANY
            at, found = self._find(key, hashed) if len(key) <= KEY_BYTES else (-1, False)
            if at < 0:
                if not local_ok:
                    return Admission.TOO_MANY_FROM_IP
                self._add(self.totals_at, 1)
                return Admission.UNSHARED
            counts = at + _ROW_HEAD.size
            if found and max_per_ip is not None and self._sum(counts) >= max_per_ip:
                return Admission.TOO_MANY_FROM_IP
            if not found:
                _ROW_HEAD.pack_into(self.map, at, hashed, len(key), key)
            self._add(counts, 1)
            self._add(self.totals_at, 1)
            return Admission.ADMITTED

    def release(self, ip: str, shared: bool = True) -> None:
        """The end of a session `admit` counted (shared=False: one it answered UNSHARED)."""
        key = ip.encode()
        with self._locked():
            self._add(self.totals_at, -1)
            if not shared or len(key) > KEY_BYTES:
                return
            at, found = self._find(key, self._hash(key))
            if not found:
                return  # zeroed by a reset meanwhile: not ours to count
            self._add(at + _ROW_HEAD.size, -1)
            if self._sum(at + _ROW_HEAD.size) == 0:
                self._delete((at - self.rows_at) // self.row_size)

    def _delete(self, hole: int) -> None:
        """Free a row, moving later rows of its probe chain back (no tombstones needed)."""
        index = hole
        while True:
            index = (index + 1) & self.mask
            at = self._row(index)
            row_hash, length, _ = _ROW_HEAD.unpack_from(self.map, at)
            if length == 0:
                break
            home = row_hash & self.mask
            # The row stays when its home lies cyclically in (hole, index].
            if (hole < home <= index) if hole <= index else (home > hole or home <= index):
                continue
            start = self._row(hole)
            self.map[start : start + self.row_size] = self.map[at : at + self.row_size]
            hole = index
        start = self._row(hole)
        self.map[start : start + self.row_size] = bytes(self.row_size)

    def reset(self, worker: int | None = None) -> None:
        """Zero one worker's column (default: this process's) and rebuild the table.

        Rebuilding also repairs what a worker killed in the middle of `_delete` can leave: a
        row copied but not yet cleared (two identical rows, merged by taking the larger
        count of each column) or a hole in a probe chain."""
        column = self.worker if worker is None else worker
        zero = struct.Struct("<I")
        with self._locked():
            zero.pack_into(self.map, self.totals_at + 4 * column, 0)
            rows: dict[bytes, list[int]] = {}
            for index in range(self.slots):
                at = self._row(index)
                _, length, key = _ROW_HEAD.unpack_from(self.map, at)
                if length == 0:
                    continue
                counts = list(self.counts.unpack_from(self.map, at + _ROW_HEAD.size))
                counts[column] = 0
                old = rows.setdefault(key[:length], counts)
                rows[key[:length]] = [max(a, b) for a, b in zip(old, counts, strict=True)]
            end = self._row(self.slots)
            self.map[self.rows_at : end] = bytes(end - self.rows_at)
            for key, counts in rows.items():
                if any(counts):
                    hashed = self._hash(key)
                    at, _ = self._find(key, hashed)
                    _ROW_HEAD.pack_into(self.map, at, hashed, len(key), key)
                    self.counts.pack_into(self.map, at + _ROW_HEAD.size, *counts)

    def total(self) -> int:
        """Sessions open in the whole daemon."""
        with self._locked():
            return self._sum(self.totals_at)

    def count(self, ip: str) -> int:
        """Sessions of `ip` open in the whole daemon (0 for a key that is not shared)."""
        key = ip.encode()
        if len(key) > KEY_BYTES:
            return 0
        with self._locked():
            at, found = self._find(key, self._hash(key))
            return self._sum(at + _ROW_HEAD.size) if found else 0
