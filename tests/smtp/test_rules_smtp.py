"""Issue 4's rules end to end: real SMTP into the daemon, the CLI to manage and to read back."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.conftest import (
    DATA,
    Cli,
    RunningDaemon,
    free_port,
    make_account,
    read_data,
    start_daemon,
)
from tests.smtp.test_daemon import engagements, send


def lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def contacts(cli: Cli, *flags: str) -> dict[str, dict[str, Any]]:
    return {c["addresses"][0]: c for c in lines(cli("contacts", "list", "acme", "--json", *flags))}


def dry_run(cli: Cli, rcpt: str, name: str) -> dict[str, Any]:
    [decision] = lines(cli("dry-run", "--rcpt", rcpt, str(DATA / name), "--json"))
    return decision


def test_never_log_list_skip_and_purge(daemon: RunningDaemon, cli: Cli) -> None:
    account = make_account(cli)
    for name in ("rules_bcc_never_log_mixed.eml", "rules_bcc_never_log_only.eml",
                 "bcc_simple.eml"):  # fmt: skip
        assert send(daemon, read_data(name), [account.bcc], "rita@acme.test")[0] == 250
    assert {"eve@audit.blocked.test", "ben@blocked.test"} <= set(contacts(cli))
    assert len(engagements(cli, "acme")) == 3

    # Adding an entry keeps history; new mail is filtered.
    assert "added to" in cli("never-log", "add", "acme", "@Blocked.TEST")
    assert "already on" in cli("never-log", "add", "acme", "blocked.test")
    assert [e["pattern"] for e in lines(cli("never-log", "list", "acme", "--json"))] == [
        "blocked.test"
    ]
    assert len(engagements(cli, "acme")) == 3
    only = dry_run(cli, account.bcc, "rules_bcc_never_log_only.eml")
    assert (only["decision"], only["reason"], only["engagement"]) == ("ignore", "never_log", None)
    mixed = dry_run(cli, account.bcc, "rules_bcc_never_log_mixed.eml")
    assert mixed["reason"] == "logged" and mixed["engagement"]["cc"] == []
    assert mixed["engagement"]["contacts"] == ["carl@globex.test"]

    # --purge: the all-never-logged email goes, the mixed one loses Eve, her contact goes.
    report = json.loads(cli("never-log", "add", "acme", "blocked.test", "--purge", "--json"))
    assert report["engagements_deleted"] == 1 and report["engagements_trimmed"] == 1
    assert report["contacts_deleted"] == 2 and report["companies_deleted"] == 2
    rows = {e["subject"]: e for e in engagements(cli, "acme")}
    assert set(rows) == {"Contract redlines", "Proposal for the Q3 rollout"}
    assert rows["Contract redlines"]["cc"] == [] and rows["Contract redlines"]["contacts"] == [
        "carl@globex.test"
    ]
    assert rows["Contract redlines"]["companies"] == ["globex.test"]
    assert not {"eve@audit.blocked.test", "ben@blocked.test"} & set(contacts(cli, "--all"))

    code, text = send(daemon, read_data("rules_bcc_never_log_only.eml"), [account.bcc],
                      "rita@acme.test")  # fmt: skip
    assert code == 250 and b"not logged: never_log" in text
    [event] = lines(cli("events", "acme", "--limit", "1", "--json"))
    assert event["reason"] == "never_log"

    # Clear one-line errors, never tracebacks.
    refused = [("com", "needs a dot"), ("a b.test", "neither"), ("acme.test", "own domains"),
               ("rita@acme.test", "own domains")]  # fmt: skip
    for bad, message in refused:
        output = cli("never-log", "add", "acme", bad, expect=1)
        assert message in output and "Traceback" not in output
    assert "is not on the never-log list" in cli("never-log", "remove", "acme", "x.test", expect=1)
    cli("never-log", "remove", "acme", "blocked.test")
    assert lines(cli("never-log", "list", "acme", "--json")) == []


def test_contact_soft_and_permanent_delete(daemon: RunningDaemon, cli: Cli) -> None:
    account = make_account(cli)
    send(daemon, read_data("rules_bcc_tombstone_first.eml"), [account.bcc], "rita@acme.test")
    assert "olga.old@initech.test" in contacts(cli)

    # Soft: hidden from the list, still matched and linked.
    assert "deleted" in cli("contact", "delete", "acme", "OLGA.OLD@initech.test")
    assert "olga.old@initech.test" not in contacts(cli)
    hidden = contacts(cli, "--all")["olga.old@initech.test"]
    assert hidden["deleted_at"] is not None
    send(daemon, read_data("rules_bcc_tombstone.eml"), [account.bcc], "rita@acme.test")
    first, second = engagements(cli, "acme")
    assert (
        "olga.old@initech.test" in first["contacts"]
        and "olga.old@initech.test" in (second["contacts"])
    )
    assert len([c for c in contacts(cli, "--all") if c.startswith("olga")]) == 1

    # Permanent: the address leaves contacts and participants; a tombstone stops re-creation.
    assert "erased" in cli("contact", "delete", "acme", "olga.old@initech.test", "--permanent")
    assert "olga.old@initech.test" not in contacts(cli, "--all")
    for row in engagements(cli, "acme"):
        people = [p["address"].lower() for p in row["to"] + row["cc"]] + row["contacts"]
        assert "olga.old@initech.test" not in people
    decision = dry_run(cli, account.bcc, "rules_bcc_tombstone.eml")  # To: Olga.Old@Initech.TEST
    assert decision["engagement"]["contacts"] == ["ina@initech.test"]
    [match] = [entry for entry in decision["trace"] if entry["stage"] == "match"]
    assert "(permanently deleted)" in match["detail"]
    assert "no contact" in cli("contact", "delete", "acme", "nobody@x.test", expect=1)


def test_user_addresses_list_and_sharing(daemon: RunningDaemon, cli: Cli) -> None:
    account = make_account(cli)
    raw = read_data("rules_bcc_alias.eml")
    assert send(daemon, raw, [account.bcc], "rita.sales@acme-mail.test")[0] == 550
    cli("user", "address", "add", "acme", "rita@acme.test", "Rita.Sales@acme-mail.test",
        "--kind", "alias")  # fmt: skip
    again = cli("user", "address", "add", "acme", "rita@acme.test", "rita.sales@acme-mail.test",
                "--kind", "team", expect=1)  # fmt: skip
    assert "already has" in again
    cli("user", "set-sharing", "acme", "rita@acme.test", "subject")
    users = {u["email"]: u for u in lines(cli("user", "list", "acme", "--json"))}
    assert users["rita@acme.test"]["sharing"] == "subject"
    assert users["rita@acme.test"]["addresses"] == [
        {"address": "rita@acme.test", "kind": "login"},
        {"address": "rita.sales@acme-mail.test", "kind": "alias"},
    ]
    code, _ = send(daemon, raw, [account.bcc], "rita.sales@acme-mail.test")
    assert code == 250
    [row] = engagements(cli, "acme")
    assert row["owner"] == "rita@acme.test" and row["body_text"] == ""  # sharing: subject
    assert row["subject"] == "Follow-up from the alias"
    assert "login" in cli("user", "address", "remove", "acme", "rita@acme.test",
                          "rita@acme.test", expect=1)  # fmt: skip
    cli("user", "address", "remove", "acme", "rita@acme.test", "rita.sales@acme-mail.test")
    decision = dry_run(cli, account.bcc, "rules_bcc_alias.eml")
    assert (decision["decision"], decision["reason"]) == ("reject", "sender_not_user")


def test_deals_associate_until_closed(daemon: RunningDaemon, cli: Cli) -> None:
    account = make_account(cli)
    send(daemon, read_data("bcc_simple.eml"), [account.bcc], "rita@acme.test")
    assert "no contact" in cli("deal", "add", "acme", "X", "--contact", "zed@x.test", expect=1)
    deal = json.loads(cli("deal", "add", "acme", "Q3 rollout", "--contact", "carl@globex.test",
                          "--stage", "proposal", "--json"))["id"]  # fmt: skip
    [listed] = lines(cli("deal", "list", "acme", "--json"))
    assert (listed["id"], listed["open"], listed["contacts"]) == (deal, True, ["carl@globex.test"])
    send(daemon, read_data("rules_bcc_never_log_mixed.eml"), [account.bcc], "rita@acme.test")
    assert engagements(cli, "acme")[-1]["deals"] == [deal]
    cli("deal", "close", "acme", str(deal), "--stage", "won")
    assert "already closed" in cli("deal", "close", "acme", str(deal), expect=1)
    send(daemon, read_data("rules_bcc_tombstone.eml"), [account.bcc], "rita@acme.test")
    assert engagements(cli, "acme")[-1]["deals"] == []
    [listed] = lines(cli("deal", "list", "acme", "--json"))
    assert (listed["open"], listed["stage"]) == (False, "won")


def test_forwarded_automated_mail_is_logged_without_contacts(
    daemon: RunningDaemon, cli: Cli
) -> None:
    account = make_account(cli)
    automated = ["rules_forward_list_id.eml", "rules_forward_precedence_bulk.eml",
                 "rules_forward_auto_submitted.eml", "rules_forward_x_autoreply.eml",
                 "rules_forward_null_sender.eml", "rules_forward_report.eml"]  # fmt: skip
    for name in automated:
        decision = dry_run(cli, account.forward, name)
        assert (decision["decision"], decision["reason"]) == ("log", "logged"), name
        [match] = [entry for entry in decision["trace"] if entry["stage"] == "match"]
        assert "automated original" in match["detail"]
    first, *rest = automated
    assert send(daemon, read_data(first), [account.forward], "rita@acme.test")[0] == 250
    [row] = engagements(cli, "acme")
    assert row["from"]["address"] == "pat@vendor.test" and row["contacts"] == []
    assert contacts(cli, "--all") == {}
    # A person's mail forwarded the same way creates the contact; later automated mail from
    # that contact is associated with it, and still creates nobody (not the list address).
    send(daemon, read_data("rules_forward_person.eml"), [account.forward], "rita@acme.test")
    for name in rest:
        assert send(daemon, read_data(name), [account.forward], "rita@acme.test")[0] == 250
    rows = engagements(cli, "acme")
    assert len(rows) == len(automated) + 1
    assert all(r["contacts"] == ["pat@vendor.test"] for r in rows[1:])
    assert list(contacts(cli, "--all")) == ["pat@vendor.test"]


# -- notices ------------------------------------------------------------------------------


class Sink:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"

    def wait(self, count: int, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.messages) >= count, self.messages


@pytest.fixture
def sink() -> Iterator[tuple[Sink, int]]:
    handler = Sink()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def wait_log(daemon: RunningDaemon, event: str, count: int, timeout: float = 15) -> list[Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = [
            entry
            for entry in (json.loads(x) for x in daemon.log().splitlines() if x.startswith("{"))
            if entry.get("event") == event
        ]
        if len(found) >= count or time.monotonic() > deadline:
            assert len(found) >= count, daemon.log()
            return found
        time.sleep(0.05)


def test_notices_go_to_the_rep_once_and_rate_limited(
    database_url: str, tmp_path: Path, cli: Cli, sink: tuple[Sink, int]
) -> None:
    handler, port = sink
    account = make_account(cli)
    cli("never-log", "add", "acme", "blocked.test")
    daemon = start_daemon(
        database_url, tmp_path, notice_relay_host="127.0.0.1", notice_relay_port=str(port),
        notice_from="crm@capture.localhost", notice_max_per_hour="2",
        max_attachment_bytes="50",
    )  # fmt: skip
    try:
        # Not logged: the rep is told why, once, even when the MTA retries.
        raw = read_data("rules_forward_no_block.eml")
        code, text = send(daemon, raw, [account.forward], "rita@acme.test")
        assert code == 250 and b"no_forwarded_header" in text
        handler.wait(1)
        sender, rcpts, content = handler.messages[0]
        assert (sender, rcpts) == ("<>", ["rita@acme.test"])  # null return path
        notice = message_from_bytes(content, policy=policy.default)
        assert notice["Subject"] == "Not logged: please log the call notes"
        assert notice["Auto-Submitted"] == "auto-replied"
        assert notice["In-Reply-To"] == "<notes-1@mail.acme.test>"
        assert "Reason: no_forwarded_header" in notice.get_content()  # type: ignore[attr-defined]
        send(daemon, raw, [account.forward, account.bcc], "rita@acme.test")
        # Both copies are the message already told of: the forward's retry, and the BCC copy
        # (internal only: the capture address on its To is no participant).
        told = wait_log(daemon, "notice_skipped", 2)
        assert all("already sent" in entry["why"] for entry in told)

        # Never in reply to automated mail: the same failure from a null sender is not told.
        send(daemon, read_data("rules_forward_no_block.eml"), [account.forward], "")
        skipped = wait_log(daemon, "notice_skipped", 3)
        assert "automated mail" in skipped[2]["why"]

        # Partly logged: the engagement is there, the rep hears about the dropped file.
        code, _ = send(daemon, read_data("bcc_html_attachment.eml"), [account.bcc],
                       "rita@acme.test")  # fmt: skip
        assert code == 250
        handler.wait(2)
        second = message_from_bytes(handler.messages[1][2], policy=policy.default)
        assert str(second["Subject"]).startswith("Logged without attachments")
        events = lines(cli("events", "acme", "--json"))
        assert "attachment_too_large" in [e["reason"] for e in events]

        # Rate limit (2 an hour), durable: a restarted daemon still respects it.
        daemon.stop()
        daemon = start_daemon(
            database_url, tmp_path, notice_relay_host="127.0.0.1", notice_relay_port=str(port),
            notice_max_per_hour="2",
        )  # fmt: skip
        send(daemon, read_data("rules_bcc_never_log_only.eml"), [account.bcc], "rita@acme.test")
        limited = wait_log(daemon, "notice_skipped", 1)
        assert "rate limit" in limited[0]["why"]
        assert len(handler.messages) == 2
        assert all(rcpts == ["rita@acme.test"] for _, rcpts, _ in handler.messages)
    finally:
        daemon.stop()


def test_notice_relay_down_never_delays_or_fails_the_reply(
    database_url: str, tmp_path: Path, cli: Cli
) -> None:
    account = make_account(cli)
    daemon = start_daemon(database_url, tmp_path, notice_relay_host="127.0.0.1",
                          notice_relay_port=str(free_port()))  # fmt: skip
    try:
        started = time.monotonic()
        code, text = send(daemon, read_data("rules_forward_no_block.eml"), [account.forward],
                          "rita@acme.test")  # fmt: skip
        assert code == 250 and b"no_forwarded_header" in text
        assert time.monotonic() - started < 5
        [failed] = wait_log(daemon, "notice_failed", 1)
        assert failed["account"] == "acme"
    finally:
        daemon.stop()
