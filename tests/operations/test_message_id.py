"""Over real SMTP: one id per message in its reply, its log lines and its event; rotation."""

from __future__ import annotations

import json
import re
import smtplib

from tests.conftest import DATA, Cli, RunningDaemon, make_account


def send(daemon: RunningDaemon, name: str, rcpt: str, sender: str = "rita@acme.test") -> str:
    with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=30) as smtp:
        smtp.ehlo("client.test")
        smtp.mail(sender)
        code, text = smtp.rcpt(rcpt)
        if code != 250:
            return f"{code} {text.decode()}"
        code, text = smtp.data((DATA / name).read_bytes())
        return f"{code} {text.decode()}"


def log_lines(daemon: RunningDaemon, event_id: str) -> list[dict[str, object]]:
    found = []
    for line in daemon.log().splitlines():
        if line.startswith("{") and event_id in line:
            found.append(json.loads(line))
    return found


def test_reply_logs_and_event_share_one_id_and_rotation_retires(
    daemon: RunningDaemon, cli: Cli
) -> None:
    account = make_account(cli)
    logged = send(daemon, "bcc_simple.eml", account.bcc)
    match = re.fullmatch(r"250 2\.0\.0 queued as (eng_\w+)", logged)
    assert match, logged
    engagement_id = match.group(1)
    again = send(daemon, "bcc_simple.eml", account.bcc)
    assert again == f"250 2.0.0 Already logged as {engagement_id}"
    ignored = send(daemon, "bcc_internal.eml", account.bcc)
    assert re.fullmatch(r"250 2\.0\.0 Accepted, not logged: internal_only \(evt_\w+\)", ignored)

    # The log line of the logged message carries both ids; its event holds the same reply.
    [captured, duplicate] = [
        line
        for line in (json.loads(x) for x in daemon.log().splitlines() if x.startswith("{"))
        if line.get("event") == "message_captured" and line.get("engagement_id") == engagement_id
    ]
    event_id = str(captured["event_id"])
    assert event_id.startswith("evt_") and duplicate["event_id"] != event_id
    assert {line["event_id"] for line in log_lines(daemon, event_id)} == {event_id}
    event = json.loads(cli("events", "show", account.slug, event_id, "--json"))
    assert (event["engagement_id"], event["smtp_reply"]) == (engagement_id, logged)
    # The id is a structured field of its log lines (bound for the whole message), not text.
    ignored_id = ignored.rsplit("(", 1)[1].rstrip(")")
    assert {line["event_id"] for line in log_lines(daemon, ignored_id)} == {ignored_id}

    rotated = json.loads(cli("account", "rotate", account.slug, "--kind", "bcc", "--json"))
    refused = send(daemon, "bcc_simple.eml", account.bcc)
    assert refused.startswith("550 5.1.1") and "no such capture address" in refused
    fresh = send(daemon, "bcc_html_attachment.eml", rotated["bcc_address"])
    assert fresh.startswith("250 2.0.0 queued as eng_")
    # The other kinds were not rotated.
    assert send(daemon, "fwd_gmail.eml", account.forward).startswith("250 2.0.0 queued as eng_")
