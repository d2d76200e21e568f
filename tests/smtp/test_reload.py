"""SIGHUP re-reads the config file: a new limit holds at once, a broken file changes nothing."""

from __future__ import annotations

import os
import signal
import smtplib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Cli, RunningDaemon, free_port, make_account
from tests.smtp.test_hardening import still_serves


def write_config(path: Path, body: str) -> None:
    # Replace, never rewrite in place: the daemon may read it at any moment.
    temporary = path.with_suffix(".tmp")
    temporary.write_text(body)
    temporary.replace(path)


def config_text(database_url: str, folder: Path, max_recipients: int) -> str:
    return (
        f'database_url = "{database_url}"\n'
        f'quarantine_dir = "{folder / "quarantine"}"\n'
        'log_format = "json"\n'
        f"max_recipients = {max_recipients}\n"
    )


@pytest.fixture
def configured(sqlite_cli: Cli, tmp_path: Path) -> Iterator[tuple[RunningDaemon, Path]]:
    config = tmp_path / "capture-server.toml"
    write_config(config, config_text(sqlite_cli.database_url, tmp_path, 2))
    smtp_port, lmtp_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAPTURE_SERVER_")}
    log_path = tmp_path / "daemon.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "capture_server", "--config", str(config), "serve",
         "--smtp", f"127.0.0.1:{smtp_port}", "--lmtp", f"127.0.0.1:{lmtp_port}"],
        env=env, stdout=log_path.open("wb"), stderr=subprocess.STDOUT, cwd=tmp_path,
    )  # fmt: skip
    daemon = RunningDaemon(process, {"smtp": smtp_port, "lmtp": lmtp_port}, log_path)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, daemon.log()
            try:
                socket.create_connection(("127.0.0.1", smtp_port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, daemon.log()
                time.sleep(0.1)
        yield daemon, config
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def accepted_recipients(daemon: RunningDaemon, address: str, tries: int) -> int:
    """RCPT the same capture address `tries` times; how many were accepted (each counts)."""
    with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=30) as client:
        client.ehlo("mta.test")
        client.mail("rita@acme.test")
        codes = [client.rcpt(address)[0] for _ in range(tries)]
        client.rset()
    assert set(codes) <= {250, 452}, codes
    return codes.count(250)


def hang_up(daemon: RunningDaemon, event: str) -> None:
    seen = daemon.log().count(event)
    daemon.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while daemon.log().count(event) == seen:
        assert time.monotonic() < deadline, daemon.log()
        assert daemon.process.poll() is None, daemon.log()
        time.sleep(0.05)


def test_sighup_reloads_limits_and_keeps_them_on_a_broken_file(
    configured: tuple[RunningDaemon, Path], sqlite_cli: Cli, tmp_path: Path
) -> None:
    daemon, config = configured
    account = make_account(sqlite_cli)
    assert accepted_recipients(daemon, account.bcc, 4) == 2

    write_config(config, config_text(sqlite_cli.database_url, tmp_path, 5))
    hang_up(daemon, "settings_reloaded")
    assert accepted_recipients(daemon, account.bcc, 7) == 5

    write_config(config, "max_recipients = = 3\n")  # not TOML
    hang_up(daemon, "settings_reload_failed")
    write_config(config, config_text(sqlite_cli.database_url, tmp_path, 0))  # invalid value
    hang_up(daemon, "settings_reload_failed")
    assert accepted_recipients(daemon, account.bcc, 7) == 5
    still_serves(daemon, account.bcc, "after-bad-reload")

    # A listener or the database cannot change under a running daemon: said, not applied.
    moved = config_text("sqlite:///elsewhere.db", tmp_path, 3)
    write_config(config, moved)
    hang_up(daemon, "settings_reloaded")
    assert "settings_need_restart" in daemon.log() and "database_url" in daemon.log()
    assert accepted_recipients(daemon, account.bcc, 4) == 3
    still_serves(daemon, account.bcc, "after-restart-only-change")
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.log()
