"""A stalled database: captures wait for their commit, and nothing else waits behind them.

Captures run on threads of their own and await their commit on the event loop, so RCPT
look-ups and the health check (the default thread pool) answer while more captures than
there are threads wait for a write lock held elsewhere.
"""

from __future__ import annotations

import fcntl
import os
import smtplib
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import BinaryIO

import psycopg
import pytest

from capture_server.capture import CAPTURE_THREADS
from tests.conftest import Cli, libpq_url, make_account, open_transaction, read_data, start_daemon
from tests.test_metrics_health import fetch

WAITING = CAPTURE_THREADS + 4  # more captures than any pool has threads


@contextmanager
def writes_stalled(database_url: str, turn: bool = True) -> Iterator[None]:
    """Hold the write lock the daemon's records need, as a long transaction elsewhere would.

    SQLite: the writers' turn (store/db.py), which the daemon's own processes take before
    SQLite's lock; or with turn=False SQLite's lock itself, as another program's writer."""
    if database_url.startswith("sqlite"):
        path = database_url.removeprefix("sqlite:///")
        if not turn:
            with closing(sqlite3.connect(path, isolation_level=None)) as connection:
                connection.execute("BEGIN IMMEDIATE")
                yield
                connection.execute("ROLLBACK")
            return
        descriptor = os.open(path + "-writelock", os.O_RDWR)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)
        return
    with psycopg.connect(libpq_url(database_url)) as connection:
        # Reads go on (RCPT, the snapshot, the health check); every record's writes wait.
        connection.execute("LOCK TABLE capture_event IN EXCLUSIVE MODE")
        yield


def rcpt_seconds(port: int, rcpt: str) -> float:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"220")
        for command in (b"HELO client.test", b"MAIL FROM:<rita@acme.test>",
                        f"RCPT TO:<{rcpt}>".encode()):  # fmt: skip
            sock.sendall(command + b"\r\n")
            assert reader.readline().startswith(b"250")
        sock.sendall(b"QUIT\r\n")
    return time.monotonic() - started


def test_rcpt_and_health_answer_while_captures_wait_for_the_database(
    database_url: str, tmp_path: Path, cli: Cli
) -> None:
    account = make_account(cli)
    daemon = start_daemon(database_url, tmp_path, metrics_listen="127.0.0.1:0")
    template = read_data("bcc_simple.eml").replace(b"\n", b"\r\n")
    replies: dict[int, bytes] = {}
    sessions: list[tuple[socket.socket, BinaryIO]] = []
    try:
        with writes_stalled(database_url):
            for number in range(WAITING):
                sock, reader = open_transaction(daemon.smtp_port, account.bcc)
                raw = template.replace(b"<proposal-q3-1@", f"<stalled-{number}@".encode())
                sock.sendall(raw + b".\r\n")
                sessions.append((sock, reader))
            time.sleep(1)  # every capture is past its pipeline, waiting for the write lock
            for sock, _ in sessions:
                sock.settimeout(0.1)
                try:
                    early = sock.recv(100)
                except TimeoutError:
                    early = b""
                assert early == b"", early  # nothing acknowledged before the commit
                sock.settimeout(60)
            assert rcpt_seconds(daemon.smtp_port, account.bcc) < 5
            status, _ = fetch(f"http://127.0.0.1:{daemon.ports['metrics']}/healthz")
            assert status == 200

        def collect(number: int) -> None:
            replies[number] = sessions[number][1].readline()

        readers = [threading.Thread(target=collect, args=(n,)) for n in range(WAITING)]
        for thread in readers:
            thread.start()
        for thread in readers:
            thread.join(timeout=60)
    finally:
        for sock, _ in sessions:
            sock.close()
        assert daemon.stop() == 0
    assert sorted(replies) == list(range(WAITING))
    assert all(reply.startswith(b"250 2.0.0 queued as eng_") for reply in replies.values())
    listed = cli("engagements", "list", "acme", "--json").splitlines()
    assert len(listed) == WAITING


def test_a_lock_held_past_the_lock_timeout_answers_451_and_the_retry_is_stored(
    database_url: str, tmp_path: Path, cli: Cli
) -> None:
    """database_lock_timeout_seconds bounds the wait (SQLite's busy timeout, PostgreSQL's
    lock_timeout, which had none): the client is told to retry, and nothing is half-stored."""
    account = make_account(cli)
    daemon = start_daemon(database_url, tmp_path, database_lock_timeout_seconds="1")
    raw = read_data("bcc_simple.eml")

    def send() -> None:
        with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=30) as client:
            client.sendmail("rita@acme.test", [account.bcc], raw)

    try:
        with writes_stalled(database_url, turn=False):
            started = time.monotonic()
            with pytest.raises(smtplib.SMTPDataError) as refused:
                send()
        waited = time.monotonic() - started
        assert (refused.value.smtp_code, refused.value.smtp_error[:5]) == (451, b"4.3.0")
        assert waited < 15  # not the default 30 s, nor forever
        send()  # the lock is gone: stored
    finally:
        assert daemon.stop() == 0
    assert len(cli("engagements", "list", "acme", "--json").splitlines()) == 1
