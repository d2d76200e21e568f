"""The daemon's connection counts shared by worker processes (smtp/shared_counts.py): the
table on its own, across real processes, and a daemon of 2 workers over real SMTP."""

from __future__ import annotations

import contextlib
import json
import os
import random
import select
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from capture_server.smtp.shared_counts import Admission, SharedCounts, slots_for
from capture_server.store.db import make_engine, migrate
from tests.conftest import RunningDaemon, start_daemon
from tests.smtp.test_workers import _kill_all, _wait_workers

UNLIMITED = 1_000_000


@pytest.fixture
def region() -> Iterator[SharedCounts]:
    counts = SharedCounts.create(workers=4, slots=16)
    yield counts
    counts.close(close_fd=True)


def test_slots_for_a_daemon() -> None:
    assert slots_for(1) == 256
    assert slots_for(500) == 1024
    assert slots_for(10**9) == 1 << 16


def test_counts_match_a_model_through_admits_and_releases(region: SharedCounts) -> None:
    """Random sessions of 12 addresses in a table of 16 rows: every deletion moves rows back
    along their probe chains; each count stays exact and findable."""
    rng = random.Random(7)
    addresses = [f"10.0.{n}.{n * 7 % 256}" for n in range(12)] + ["2001:db8::1"]
    model: Counter[str] = Counter()
    for _ in range(5000):
        ip = rng.choice(addresses)
        if model[ip] and rng.random() < 0.5:
            region.release(ip)
            model[ip] -= 1
        else:
            expected = Admission.ADMITTED if model[ip] < 3 else Admission.TOO_MANY_FROM_IP
            assert region.admit(ip, UNLIMITED, 3) is expected
            model[ip] += expected is Admission.ADMITTED
        assert region.total() == sum(model.values())
    assert {ip: region.count(ip) for ip in addresses} == {ip: model[ip] for ip in addresses}
    for ip, open_ in model.items():
        for _ in range(open_):
            region.release(ip)
    assert region.total() == 0
    assert all(region.count(ip) == 0 for ip in addresses)
    assert region.admit("10.9.9.9", UNLIMITED, None) is Admission.ADMITTED  # rows were freed


def test_total_limit_and_proxies(region: SharedCounts) -> None:
    assert [region.admit("192.0.2.1", 3, None) for _ in range(4)] == [Admission.ADMITTED] * 3 + [
        Admission.TOO_MANY
    ]
    assert region.count("192.0.2.1") == 3  # no per-address limit (a load balancer)
    assert region.admit("192.0.2.2", 3, 10) is Admission.TOO_MANY


def test_a_full_table_falls_back_to_the_local_share(region: SharedCounts) -> None:
    for n in range(16):
        assert region.admit(f"10.1.0.{n}", UNLIMITED, 5) is Admission.ADMITTED
    assert region.admit("10.2.0.1", UNLIMITED, 5, local_ok=True) is Admission.UNSHARED
    assert region.admit("10.2.0.1", UNLIMITED, 5, local_ok=False) is Admission.TOO_MANY_FROM_IP
    assert region.admit("10.1.0.3", UNLIMITED, 5) is Admission.ADMITTED  # has its row
    long_key = "x" * 80  # no textual address is this long
    assert region.admit(long_key, UNLIMITED, 5) is Admission.UNSHARED
    assert region.total() == 19
    region.release("10.2.0.1", shared=False)
    region.release(long_key, shared=False)
    assert region.total() == 17 and region.count("10.1.0.3") == 2


_CHILD = """
import json, sys, time
from capture_server.smtp.shared_counts import Admission, SharedCounts
fd, worker, mode, rounds = (int(a) if a.isdigit() else a for a in sys.argv[1:5])
counts = SharedCounts(fd, worker)
admitted = 0
if mode == "churn":  # admit and release, many addresses, a per-address limit never reached
    held = []
    for n in range(rounds):
        ip = f"10.0.0.{(n * 7 + worker) % 40}"
        assert counts.admit(ip, 1_000_000, 1_000_000) is Admission.ADMITTED
        held.append(ip)
        if len(held) > 5:
            counts.release(held.pop(0))
    for ip in held:
        counts.release(ip)
elif mode == "per_ip":  # sessions held: who gets the address's 20?
    for _ in range(rounds):
        admitted += counts.admit("192.0.2.7", 1_000_000, 20) is Admission.ADMITTED
elif mode == "total":  # sessions held: who gets the rest of a total of 30?
    for _ in range(rounds):
        admitted += counts.admit("192.0.2.8", 30, 1_000_000) is Admission.ADMITTED
else:  # hold: admit `rounds` sessions and stay (to be killed)
    for n in range(rounds):
        assert counts.admit(f"10.3.0.{n % 3}", 1_000_000, 1_000_000) is Admission.ADMITTED
    print("held", flush=True)
    time.sleep(60)
print(json.dumps({"admitted": admitted}), flush=True)
"""


def _children(counts: SharedCounts, mode: str, rounds: int, workers: int) -> list[dict[str, int]]:
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(counts.fd), str(worker), mode, str(rounds)],
            pass_fds=[counts.fd],
            stdout=subprocess.PIPE,
        )
        for worker in range(workers)
    ]
    results = []
    for process in processes:
        out, _ = process.communicate(timeout=60)
        assert process.returncode == 0
        results.append(json.loads(out))
    return results


def test_concurrent_processes_keep_exact_counts() -> None:
    counts = SharedCounts.create(workers=4, slots=64)
    try:
        _children(counts, "churn", 3000, 4)
        assert counts.total() == 0
        assert all(counts.count(f"10.0.0.{n}") == 0 for n in range(40))
        # Four processes race for one address's 20, then for a total of 30: exactly that
        # many win.
        results = _children(counts, "per_ip", 40, 4)
        assert sum(r["admitted"] for r in results) == 20
        results = _children(counts, "total", 40, 4)
        assert sum(r["admitted"] for r in results) == 10
        assert counts.count("192.0.2.7") == 20 and counts.count("192.0.2.8") == 10
        assert counts.total() == 30
    finally:
        counts.close(close_fd=True)


def test_a_killed_workers_counts_are_cleared_by_reset() -> None:
    counts = SharedCounts.create(workers=2, slots=16)
    try:
        counts.reset(0)
        for _ in range(2):
            assert counts.admit("10.3.0.0", UNLIMITED, UNLIMITED) is Admission.ADMITTED
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(counts.fd), "1", "hold", "9"],
            pass_fds=[counts.fd],
            stdout=subprocess.PIPE,
        )
        try:
            assert child.stdout is not None
            assert child.stdout.readline() == b"held\n"
            assert counts.total() == 11 and counts.count("10.3.0.0") == 5
            child.kill()  # SIGKILL: it releases nothing
            child.wait(10)
        finally:
            if child.poll() is None:
                child.kill()
        assert counts.total() == 11  # still counted: nobody said it died
        counts.reset(1)  # the supervisor, reaping it
        assert counts.total() == 2
        assert [counts.count(f"10.3.0.{n}") for n in range(3)] == [2, 0, 0]
        for _ in range(2):
            counts.release("10.3.0.0")
        assert counts.total() == 0
        # Its rows were freed: the 16 rows take 16 new addresses.
        assert all(
            counts.admit(f"10.4.0.{n}", UNLIMITED, 1) is Admission.ADMITTED for n in range(16)
        )
    finally:
        counts.close(close_fd=True)


def test_reset_repairs_a_row_a_killed_worker_left_copied_twice(region: SharedCounts) -> None:
    """A worker killed inside a deletion may leave a row copied but not yet cleared."""
    assert region.admit("10.5.0.1", UNLIMITED, UNLIMITED) is Admission.ADMITTED
    source = next(
        region._row(i) for i in range(region.slots) if region.map[region._row(i) + 4] != 0
    )
    target = next(
        region._row(i) for i in range(region.slots) if region.map[region._row(i) + 4] == 0
    )
    region.map[target : target + region.row_size] = region.map[source : source + region.row_size]
    region.reset(3)  # another worker's column: the copies merge into one row
    rows = [region._row(i) for i in range(region.slots)]
    assert sum(region.map[at + 4] != 0 for at in rows) == 1
    assert region.count("10.5.0.1") == 1 and region.total() == 1


# --- A daemon of two workers, over real SMTP on loopback ---------------------------------


def _daemon_counts(daemon: RunningDaemon) -> SharedCounts:
    """The supervisor's region, opened through /proc (the test reads what the workers count)."""
    folder = Path(f"/proc/{daemon.process.pid}/fd")
    for entry in folder.iterdir():
        with contextlib.suppress(OSError):
            if "memfd:capture-server-counts" in os.readlink(entry):
                return SharedCounts(os.open(entry, os.O_RDWR | os.O_CLOEXEC), 0)
    raise AssertionError("no counts region in the supervisor")


def _connect(port: int, source: str) -> tuple[socket.socket, bytes]:
    """A connection from a loopback `source` address and its first reply line."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    return sock, sock.makefile("rb").readline()


def _refused(port: int, source: str) -> bool:
    sock, reply = _connect(port, source)
    sock.close()
    return reply.startswith(b"421")


def _wait_total(counts: SharedCounts, expected: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while counts.total() != expected:
        assert time.monotonic() < deadline, f"{counts.total()} open, not {expected}"
        time.sleep(0.01)


def _tear_down(daemon: RunningDaemon, sockets: list[socket.socket], counts: SharedCounts | None
               ) -> None:  # fmt: skip
    for sock in sockets:
        sock.close()
    if counts is not None:
        counts.close(close_fd=True)
    _kill_all(daemon)


def _closed_by_server(sock: socket.socket) -> bool:
    if not select.select([sock], [], [], 0)[0]:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def test_connection_limits_hold_across_two_workers_exactly(tmp_path: Path) -> None:
    """max_connections_per_ip = 4, max_connections = 6 over 2 workers, 10 rounds: the 4th
    session of one address and the 6th in all are admitted wherever the kernel's hash puts
    them, the next ones get 421. (Each worker counting its 1/N refused some of these 4 in
    10 of 16 rounds: a 2/2 split is 6 of the 16 ways.)"""
    url = f"sqlite:///{tmp_path / 'limits.db'}"
    migrate(make_engine(url))
    daemon = start_daemon(
        url, tmp_path, workers="2", max_connections="6", max_connections_per_ip="4"
    )
    sockets: list[socket.socket] = []
    counts = None
    try:
        _wait_workers(daemon, 2)
        counts = _daemon_counts(daemon)
        for round_ in range(10):
            replies = []
            for source in ["127.0.0.1"] * 5 + ["127.0.0.2"] * 2 + ["127.0.0.3"]:
                sock, reply = _connect(daemon.smtp_port, source)
                sockets.append(sock)
                replies.append(reply.decode().rstrip())
            codes = [reply[:3] for reply in replies]
            assert codes == ["220"] * 4 + ["421"] + ["220"] * 2 + ["421"], (round_, replies)
            assert "from your address" in replies[4] and "from your" not in replies[7]
            assert counts.count("127.0.0.1") == 4 and counts.count("127.0.0.2") == 2
            assert counts.total() == 6
            for sock in sockets:
                sock.close()
            sockets.clear()
            _wait_total(counts, 0)
        assert counts.count("127.0.0.1") == 0
        assert daemon.stop() == 0
    finally:
        _tear_down(daemon, sockets, counts)


def test_a_killed_workers_sessions_stop_counting(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'killed.db'}"
    migrate(make_engine(url))
    daemon = start_daemon(url, tmp_path, workers="2", max_connections="8")
    sockets: list[socket.socket] = []
    counts = None
    try:
        workers = _wait_workers(daemon, 2)
        counts = _daemon_counts(daemon)
        for n in range(8):  # 8 addresses: on both workers but 2 times in 256
            sock, reply = _connect(daemon.smtp_port, f"127.0.0.{10 + n}")
            assert reply.startswith(b"220"), reply
            sockets.append(sock)
        assert counts.total() == 8
        assert _refused(daemon.smtp_port, "127.0.0.99")
        os.kill(workers[0], signal.SIGKILL)
        deadline = time.monotonic() + 20
        while True:  # its sessions closed (by the kernel) and uncounted (by the supervisor)
            alive = [sock for sock in sockets if not _closed_by_server(sock)]
            if counts.total() == len(alive) and daemon.events("worker_exited"):
                break
            assert time.monotonic() < deadline, (counts.total(), len(alive), daemon.log())
            time.sleep(0.05)
        _wait_workers(daemon, 2)  # the replacement (or the old pid, read before it logged)
        fresh = []
        for n in range(8 - len(alive)):  # room again for exactly what the dead one held
            sock, reply = _connect(daemon.smtp_port, f"127.0.1.{n}")
            fresh.append(sock)
            assert reply.startswith(b"220"), reply
        sockets += fresh
        assert _refused(daemon.smtp_port, "127.0.0.99")
        assert counts.total() == 8
        assert daemon.stop(timeout=60) == 0
    finally:
        _tear_down(daemon, sockets, counts)
