"""A running daemon caches account state; the very next message obeys a change made by the CLI."""

from __future__ import annotations

import json
import smtplib

from tests.conftest import Cli, RunningDaemon, make_account, read_data
from tests.smtp.test_daemon import send


def _message(number: int, sender: str = "rita@acme.test") -> bytes:
    raw = read_data("bcc_simple.eml")
    raw = raw.replace(b"<proposal-q3-1@mail.acme.test>", f"<cache-{number}@acme.test>".encode())
    return raw.replace(b"Rita Rep <rita@acme.test>", sender.encode())


def test_cli_changes_reach_the_very_next_message(daemon: RunningDaemon, cli: Cli) -> None:
    account = make_account(cli)
    code, text = send(daemon, _message(1), [account.bcc], "rita@acme.test")
    assert code == 250 and text.startswith(b"2.0.0 queued as eng_"), text  # cache warm

    # A user added while the daemon runs may log at once.
    code, _ = send(daemon, _message(2, "nina@acme.test"), [account.bcc], "nina@acme.test")
    assert code == 550
    cli("user", "add", "acme", "nina@acme.test")
    code, text = send(daemon, _message(3, "nina@acme.test"), [account.bcc], "nina@acme.test")
    assert code == 250 and text.startswith(b"2.0.0 queued as eng_"), text

    # A never-log entry applies to the next message.
    cli("never-log", "add", "acme", "globex.test")
    cli("never-log", "add", "acme", "gmail.com")
    code, text = send(daemon, _message(4), [account.bcc], "rita@acme.test")
    assert code == 250 and b"not logged: never_log" in text, text
    cli("never-log", "remove", "acme", "globex.test")
    cli("never-log", "remove", "acme", "gmail.com")

    # So does a setting.
    cli("account", "settings", "set", "acme", "max_body_bytes", "10")
    code, text = send(daemon, _message(5), [account.bcc], "rita@acme.test")
    assert code == 250 and b"body_too_large" in text, text

    # And a rotated capture address is refused at the next RCPT.
    rotated = json.loads(cli("account", "rotate", "acme", "--json"))
    assert rotated["bcc_address"] != account.bcc
    code, text = send(daemon, _message(6), [rotated["bcc_address"]], "rita@acme.test")
    assert code == 250, text
    with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=30) as client:
        client.ehlo("client.test")
        client.mail("rita@acme.test")
        code, text = client.rcpt(account.bcc)
    assert code == 550 and b"5.1.1" in text, text
