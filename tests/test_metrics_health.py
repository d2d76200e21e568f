"""Metrics and health: Prometheus exposition, /healthz, and `capture-server health`."""

from __future__ import annotations

import json
import smtplib
import urllib.error
import urllib.request
from pathlib import Path

from tests.conftest import Cli, make_account, read_data, start_daemon


def fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def metric(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            found = series[len(name) :].strip("{}")
            if ",".join(sorted(found.split(","))) == wanted:
                return float(value)
    raise AssertionError(f"{name}{{{wanted}}} not exposed")


def test_metrics_count_decisions_replies_and_stages(
    database_url: str, tmp_path: Path, cli: Cli
) -> None:
    account = make_account(cli)
    daemon = start_daemon(database_url, tmp_path, metrics_listen="127.0.0.1:0")
    port = daemon.ports["metrics"]
    try:
        with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=30) as client:
            client.sendmail("rita@acme.test", [account.bcc], read_data("bcc_simple.eml"))
            client.sendmail("rita@acme.test", [account.bcc], read_data("bcc_internal.eml"))
            client.ehlo()
            client.mail("mallory@evil.test")
            client.rcpt(account.bcc)
            assert client.data(read_data("bcc_unknown_sender.eml"))[0] == 550
        status, text = fetch(f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        assert metric(text, "capture_messages_total", decision="log", reason="logged") == 1
        assert (
            metric(text, "capture_messages_total", decision="ignore", reason="internal_only") == 1
        )
        assert (
            metric(text, "capture_messages_total", decision="reject", reason="sender_not_user") == 1
        )
        assert metric(text, "capture_smtp_replies_total", code="250") == 2
        assert metric(text, "capture_smtp_replies_total", code="550") == 1
        assert metric(text, "capture_stage_seconds_count", stage="parse") == 3
        assert metric(text, "capture_store_seconds_count", operation="record") == 3
        assert metric(text, "capture_sessions_open") >= 0
        assert metric(text, "capture_quarantine_messages") == 0
        assert fetch(f"http://127.0.0.1:{port}/healthz") == (200, "ok\n")
        assert fetch(f"http://127.0.0.1:{port}/nope")[0] == 404
    finally:
        assert daemon.stop() == 0


def test_health_command(cli: Cli, database_url: str, tmp_path: Path) -> None:
    report = json.loads(cli("health", "--json"))
    assert report == {
        "healthy": True,
        "checks": {"store": {"ok": True, "detail": "reachable and migrated"}},
    }
    daemon = start_daemon(database_url, tmp_path)
    try:
        listening = cli(
            "health", "--listeners", "--json",
            env_extra={
                "CAPTURE_SERVER_SMTP_LISTEN": f"127.0.0.1:{daemon.smtp_port}",
                "CAPTURE_SERVER_LMTP_LISTEN": f"127.0.0.1:{daemon.lmtp_port}",
            },
        )  # fmt: skip
        assert json.loads(listening)["healthy"] is True
    finally:
        assert daemon.stop() == 0
    down = cli(
        "health", "--listeners",
        env_extra={"CAPTURE_SERVER_SMTP_LISTEN": f"127.0.0.1:{daemon.smtp_port}"},
        expect=1,
    )  # fmt: skip
    assert "smtp: FAIL" in down
    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    assert "not migrated" in Cli(fresh, {})("health", expect=1)
