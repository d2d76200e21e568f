"""SQLite writers take turns through a lock file, across threads and processes (issue 10)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine

from capture_server.store.db import make_engine, migrate, writer_turn
from capture_server.store.repositories import Store, StoreUnavailable
from capture_server.store.writer import GroupWriter, _Pending
from tests.store.test_store import setup_account
from tests.store.test_writer import _args

HOLD_LOCK = """
import fcntl, os, sys
descriptor = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(descriptor, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.readline()
"""


def sqlite_store(tmp_path: Path) -> tuple[Store, Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'capture.db'}")
    migrate(engine)
    return Store(engine), engine


def test_a_write_waits_for_the_turn_another_process_holds(tmp_path: Path) -> None:
    store, engine = sqlite_store(tmp_path)
    try:
        setup_account(store)
        account_id = store.account_id("acme")
        lock_path = store.writer_turn.path
        assert lock_path == f"{tmp_path / 'capture.db'}-writelock"
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLD_LOCK, lock_path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
            writer = threading.Thread(
                target=store.tombstone, args=(account_id, "gone@example.test")
            )
            writer.start()
            writer.join(0.5)
            assert writer.is_alive(), "the write did not wait for the other process's turn"
            assert holder.stdin is not None
            holder.stdin.write("\n")
            holder.stdin.flush()
            writer.join(10)
            assert not writer.is_alive(), "the write did not go ahead once the turn was free"
        finally:
            holder.kill()
            holder.wait(5)
        assert store.snapshot(account_id).tombstones  # the write landed
    finally:
        engine.dispose()


def test_threads_of_one_process_take_turns_too(tmp_path: Path) -> None:
    store, engine = sqlite_store(tmp_path)
    try:
        inside = threading.Event()
        release = threading.Event()
        order: list[str] = []

        def first() -> None:
            with store.writer_turn.held():
                order.append("first in")
                inside.set()
                release.wait(10)
                order.append("first out")

        def second() -> None:
            with store.writer_turn.held():
                order.append("second in")

        one = threading.Thread(target=first)
        one.start()
        assert inside.wait(10)
        two = threading.Thread(target=second)
        two.start()
        two.join(0.3)
        assert two.is_alive()
        release.set()
        one.join(10)
        two.join(10)
        assert order == ["first in", "first out", "second in"]
    finally:
        engine.dispose()


def test_no_lock_file_for_postgresql_or_memory_databases() -> None:
    assert writer_turn(make_engine("sqlite://")).path is None
    assert writer_turn(make_engine("postgresql+psycopg://u@127.0.0.1:1/db")).path is None


class TurnHolder:
    """Another process holding the writers' turn until released."""

    def __init__(self, lock_path: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", HOLD_LOCK, lock_path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "held"

    def release(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("\n")
        self.process.stdin.flush()
        self.process.wait(10)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(5)


def test_the_wait_for_the_turn_ends_at_the_lock_timeout(tmp_path: Path) -> None:
    """A hung holder (an admin command stopped mid-transaction) costs a 451, not a capture
    held until its client gives up; the given-up wait lets go of the turn once it gets it."""
    engine = make_engine(f"sqlite:///{tmp_path / 'capture.db'}", lock_timeout=0.5)
    migrate(engine)
    store = Store(engine)
    try:
        setup_account(store)
        account_id = store.account_id("acme")
        assert store.writer_turn.path is not None and store.writer_turn.timeout == 0.5
        holder = TurnHolder(store.writer_turn.path)
        try:
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match=r"held the database for over 0\.5 s"):
                store.tombstone(account_id, "gone@example.test")
            assert time.monotonic() - started < 5
            holder.release()
        finally:
            holder.kill()
        # The abandoned wait took the turn when the holder let go, and let go of it at once.
        writer = threading.Thread(target=store.tombstone, args=(account_id, "gone@example.test"))
        writer.start()
        writer.join(10)
        assert not writer.is_alive(), "the abandoned wait kept the turn"
        assert store.snapshot(account_id).tombstones
    finally:
        engine.dispose()


def test_a_group_that_waited_out_the_lock_answers_451_at_once(tmp_path: Path) -> None:
    """Not one message after another, each waiting the whole time-out again."""
    engine = make_engine(f"sqlite:///{tmp_path / 'capture.db'}", lock_timeout=1)
    migrate(engine)
    store = Store(engine)
    try:
        bcc = setup_account(store)
        writer = GroupWriter(store)
        batch = [_Pending(_args(store, bcc, n), {}) for n in range(5)]
        assert store.writer_turn.path is not None
        holder = TurnHolder(store.writer_turn.path)
        try:
            started = time.monotonic()
            writer._together(batch)
            waited = time.monotonic() - started
        finally:
            holder.kill()
        assert all(isinstance(p.error, StoreUnavailable) and p.result is None for p in batch)
        assert waited < 4, waited  # one time-out (1 s), not six
    finally:
        engine.dispose()
