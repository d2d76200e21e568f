"""`serve` with workers > 1: a supervisor and N daemon processes on the same listeners
(capture_server/workers.py), over real SMTP on loopback, on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import smtplib
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from capture_server.store.db import make_engine, migrate
from tests.conftest import (
    Cli,
    RunningDaemon,
    make_account,
    read_data,
    sigterm_during_delivery,
    start_daemon,
)

CONNECTIONS = 20
PER_CONNECTION = 3


def _message(tag: str, number: int) -> bytes:
    raw = read_data("bcc_simple.eml")
    return raw.replace(b"<proposal-q3-1@mail.acme.test>", f"<{tag}-{number}@acme.test>".encode())


def _wait_workers(daemon: RunningDaemon, count: int, timeout: float = 30) -> dict[int, int]:
    """worker number → pid of the newest of each that logged worker_ready, once `count` have."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready = {event["worker"]: event["pid"] for event in daemon.events("worker_ready")}
        if len(ready) >= count:
            return ready
        assert daemon.process.poll() is None, daemon.log()
        time.sleep(0.05)
    raise AssertionError(f"{count} workers not ready:\n{daemon.log()}")


def _kill_all(daemon: RunningDaemon) -> None:
    """After a failed test: the supervisor, and every worker it started."""
    if daemon.process.poll() is None:
        daemon.process.kill()
        daemon.process.wait(10)
    for event in daemon.events("worker_started"):
        with contextlib.suppress(OSError):  # gone already (its pid may even be reused)
            cmdline = Path(f"/proc/{event['pid']}/cmdline").read_bytes()
            if b"capture_server.workers" in cmdline:
                os.kill(event["pid"], signal.SIGKILL)


def _deliver(port: int, rcpt: str, messages: list[bytes]) -> list[tuple[int, bytes]]:
    """One SMTP session sending several messages, as an MTA reusing its connection does."""
    answers = []
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        client.ehlo("client.test")
        for raw in messages:
            code, text = client.mail("rita@acme.test")
            assert code == 250, text
            code, text = client.rcpt(rcpt)
            assert code == 250, text
            answers.append(client.data(raw))
    return answers


def _engagement_ids(cli: Cli, slug: str) -> list[str]:
    lines = cli("engagements", "list", slug, "--json").splitlines()
    return [json.loads(line)["id"] for line in lines]


def test_two_workers_share_the_mail_and_log_each_message_once(
    database_url: str, tmp_path: Path, cli: Cli
) -> None:
    account = make_account(cli)
    daemon = start_daemon(database_url, tmp_path, workers="2", metrics_listen="127.0.0.1:0")
    try:
        batches = [
            [_message("load", c * PER_CONNECTION + i) for i in range(PER_CONNECTION)]
            for c in range(CONNECTIONS)
        ]
        with ThreadPoolExecutor(CONNECTIONS) as pool:
            answers = [
                a
                for batch in pool.map(lambda b: _deliver(daemon.smtp_port, account.bcc, b), batches)
                for a in batch
            ]
        total = CONNECTIONS * PER_CONNECTION
        assert [code for code, _ in answers] == [250] * total, answers
        assert all(text.startswith(b"2.0.0 queued as eng_") for _, text in answers), answers
        replied = {text.decode().rsplit(" ", 1)[1] for _, text in answers}
        assert len(replied) == total
        assert sorted(_engagement_ids(cli, account.slug)) == sorted(replied)

        workers = _wait_workers(daemon, 2)
        captured = daemon.events("message_captured")
        assert Counter(e["engagement_id"] for e in captured) == Counter(replied)  # once each
        handled = Counter(e["pid"] for e in captured)
        assert set(handled) == set(workers.values()), handled  # both workers took mail
        assert {e["worker"] for e in captured} == {0, 1}

        # The supervisor logged each listener once; /metrics adds up both workers.
        assert Counter(e["protocol"] for e in daemon.events("listening")) == Counter(
            {"smtp": 1, "lmtp": 1, "metrics": 1}
        )
        url = f"http://127.0.0.1:{daemon.ports['metrics']}"
        with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
            text = response.read().decode()
        logged = [
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("capture_messages_total{") and 'reason="logged"' in line
        ]
        assert sum(logged) == total, text
        assert text.count("# HELP capture_sessions_open ") == 1
        with urllib.request.urlopen(f"{url}/healthz", timeout=10) as response:
            assert response.status == 200
    except BaseException:
        _kill_all(daemon)
        raise
    assert daemon.stop(timeout=60) == 0
    exited = daemon.events("worker_exited")
    assert sorted(e["pid"] for e in exited) == sorted(workers.values())
    assert all(e.get("exit_code") == 0 for e in exited), exited


def test_sigterm_to_the_supervisor_finishes_the_delivery_in_flight(
    database_url: str, tmp_path: Path, cli: Cli
) -> None:
    account = make_account(cli)
    daemon = start_daemon(database_url, tmp_path, workers="2")
    try:
        _wait_workers(daemon, 2)
        sigterm_during_delivery(daemon, account.bcc)  # every worker closes the listener
    except BaseException:
        _kill_all(daemon)
        raise
    assert daemon.process.wait(timeout=60) == 0
    assert len(_engagement_ids(cli, account.slug)) == 1
    assert len(daemon.events("worker_exited")) == 2
    assert not daemon.events("worker_killed")


def test_a_killed_worker_is_restarted_and_mail_keeps_flowing(
    database_url: str, tmp_path: Path, cli: Cli
) -> None:
    account = make_account(cli)
    daemon = start_daemon(database_url, tmp_path, workers="2")
    try:
        workers = _wait_workers(daemon, 2)
        assert _deliver(daemon.smtp_port, account.bcc, [_message("before", 0)])[0][0] == 250
        os.kill(workers[0], signal.SIGKILL)
        # Sent while worker 0 is dead or restarting: its connections wait in the queue of the
        # socket the supervisor kept, the others go to worker 1; none is refused.
        with ThreadPoolExecutor(8) as pool:
            answers = list(
                pool.map(
                    lambda n: _deliver(daemon.smtp_port, account.bcc, [_message("after", n)]),
                    range(16),
                )
            )
        assert [a[0][0] for a in answers] == [250] * 16, answers
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            restarted = _wait_workers(daemon, 2)
            if restarted[0] != workers[0]:
                break
            time.sleep(0.1)
        assert restarted[0] != workers[0] and restarted[1] == workers[1], daemon.log()
        [exited] = daemon.events("worker_exited")
        assert (exited["pid"], exited["signal"]) == (workers[0], "SIGKILL")
        assert _deliver(daemon.smtp_port, account.bcc, [_message("later", 0)])[0][0] == 250
    except BaseException:
        _kill_all(daemon)
        raise
    assert daemon.stop(timeout=60) == 0
    assert len(_engagement_ids(cli, account.slug)) == 18


def test_one_worker_is_the_single_process_daemon(
    database_url: str, tmp_path: Path, cli: Cli
) -> None:
    account = make_account(cli)
    daemon = start_daemon(database_url, tmp_path, workers="1")
    try:
        assert _deliver(daemon.smtp_port, account.bcc, [_message("one", 0)])[0][0] == 250
        children = Path(f"/proc/{daemon.process.pid}/task/{daemon.process.pid}/children")
        assert children.read_text().split() == []
    except BaseException:
        _kill_all(daemon)
        raise
    assert daemon.stop() == 0
    log = daemon.log()
    assert '"supervisor_started"' not in log and '"worker_ready"' not in log
    assert '"worker"' not in log


@pytest.mark.parametrize("value", ["many", "-1", "1000"])
def test_a_bad_workers_value_is_one_line_and_exit_2(sqlite_cli: Cli, value: str) -> None:
    output = sqlite_cli("serve", "--workers", value, expect=2)
    assert "workers" in output and "Traceback" not in output
    output = sqlite_cli("serve", expect=2, env_extra={"CAPTURE_SERVER_WORKERS": value})
    assert "workers" in output and "Traceback" not in output


def test_workers_dying_at_start_make_the_supervisor_give_up(tmp_path: Path) -> None:
    """A worker that cannot start (here: the settings file broke after the supervisor read
    it) is restarted with a backoff, then the supervisor stops with a clear error."""
    url = f"sqlite:///{tmp_path / 'c.db'}"
    engine = make_engine(url)
    migrate(engine)
    engine.dispose()
    config = tmp_path / "capture-server.toml"
    config.write_text('workers = 2\nlog_format = "json"\n')
    env = {**os.environ, "CAPTURE_SERVER_QUARANTINE_DIR": str(tmp_path / "q")}
    process = subprocess.Popen(
        [sys.executable, "-m", "capture_server", "--config", str(config), "--database-url", url,
         "serve", "--smtp", "127.0.0.1:0", "--lmtp", ""],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp_path,
    )  # fmt: skip
    assert process.stdout is not None
    lines = []
    try:
        for raw in process.stdout:
            line = raw.decode(errors="replace")
            lines.append(line)
            if '"worker_ready"' in line:
                config.write_text("workers = [not toml\n")
                os.kill(json.loads(line)["pid"], signal.SIGKILL)
        assert process.wait(timeout=60) == 1
    finally:
        if process.poll() is None:
            process.kill()
    output = "".join(lines)
    assert "error: worker" in output and "times in a row" in output, output
    assert output.count('"worker_restart_scheduled"') >= 4
    assert "Traceback" not in output


def test_connection_limits_are_the_daemons_not_each_workers(tmp_path: Path) -> None:
    """max_connections = 4 over 2 workers: 2 each, 4 in all (not 4 each, 8 in all)."""
    url = f"sqlite:///{tmp_path / 'limits.db'}"
    migrate(make_engine(url))
    daemon = start_daemon(
        url, tmp_path, workers="2", max_connections="4", max_connections_per_ip="100"
    )
    sockets = []
    try:
        _wait_workers(daemon, 2)
        greetings = []
        for _ in range(20):
            sock = socket.create_connection(("127.0.0.1", daemon.smtp_port), timeout=10)
            sockets.append(sock)
            greetings.append(sock.makefile("rb").readline()[:3])
        assert greetings.count(b"220") == 4, greetings  # the kernel spreads 20 over both
        assert set(greetings) == {b"220", b"421"}
        assert daemon.stop() == 0
    finally:
        for sock in sockets:
            sock.close()
        _kill_all(daemon)
