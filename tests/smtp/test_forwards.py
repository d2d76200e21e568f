"""Whole forwarding messages from each mail client: through dry-run and over real SMTP."""

from __future__ import annotations

import json
import re
import smtplib

import pytest

from tests.conftest import DATA, Cli, RunningDaemon, make_account

CLIENTS = sorted(path.stem.removeprefix("fwd_") for path in DATA.glob("fwd_*.eml"))
# Clients that print the original's Cc in the forwarded block.
WITH_CC = {"gmail", "apple_mail", "outlook_desktop", "outlook_2016_de", "thunderbird"}


def seats_in(raw: bytes) -> str:
    found = re.search(rb"what would (\d+) seats", raw)
    assert found, "fixture without its figure"
    return found.group(1).decode()


def check_original(engagement: dict[str, object], client: str, seats: str) -> None:
    assert engagement["from"] == {"address": "paula@umbrella.test", "name": "Paula Prospect"}, (
        client
    )
    assert engagement["subject"] == "Pricing question", client
    assert engagement["direction"] == "incoming" and engagement["kind"] == "forward"
    assert engagement["owner"] == "rita@acme.test"
    assert engagement["to"][0]["address"] == "rita@acme.test"  # type: ignore[index]
    body = str(engagement["body_text"])
    assert body.startswith("Hi Rita,") and f"what would {seats} seats" in body, (client, body)
    assert body.rstrip().endswith("Paula"), (client, body)
    assert ">" not in body and "Forwarded" not in body and "Logging this" not in body
    assert str(engagement["note"]).startswith("Logging this for the account, see below."), client
    # Only the original sender becomes a contact: Cc are not, and Rita is a user.
    assert engagement["contacts"] == ["paula@umbrella.test"], client
    assert engagement["companies"] == ["umbrella.test"]
    if client in WITH_CC:
        assert [c["address"] for c in engagement["cc"]] == ["quinn@umbrella.test"]  # type: ignore[union-attr, index]
    assert engagement["occurred_at"], client


@pytest.mark.parametrize("client", CLIENTS)
def test_dry_run_unwraps_each_client(sqlite_cli: Cli, client: str) -> None:
    cli = sqlite_cli  # unwrapping is pure: one database kind is enough; SMTP covers both
    account = make_account(cli)
    path = DATA / f"fwd_{client}.eml"
    [line] = cli("dry-run", "--rcpt", account.forward, str(path), "--json").splitlines()
    decision = json.loads(line)
    assert (decision["decision"], decision["reason"]) == ("log", "logged"), decision["trace"]
    check_original(decision["engagement"], client, seats_in(path.read_bytes()))


def test_every_client_over_smtp(daemon: RunningDaemon, cli: Cli) -> None:
    account = make_account(cli)
    with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=30) as client:
        for name in CLIENTS:
            raw = (DATA / f"fwd_{name}.eml").read_bytes()
            code, _text = client.sendmail("rita@acme.test", [account.forward], raw) or (250, b"")
            assert code == 250
    rows = [json.loads(r) for r in cli("engagements", "list", account.slug, "--json").splitlines()]
    assert len(rows) == len(CLIENTS)
    by_seats = {re.search(r"what would (\d+)", str(r["body_text"])).group(1): r for r in rows}  # type: ignore[union-attr]
    for name in CLIENTS:
        seats = seats_in((DATA / f"fwd_{name}.eml").read_bytes())
        check_original(by_seats[seats], name, seats)
    contacts = [json.loads(r) for r in cli("contacts", "list", account.slug, "--json").splitlines()]
    assert [c["addresses"] for c in contacts] == [["paula@umbrella.test"]]


def test_forward_as_attachment_over_smtp(daemon: RunningDaemon, cli: Cli) -> None:
    account = make_account(cli)
    with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=30) as client:
        client.sendmail(
            "rita@acme.test", [account.forward], (DATA / "forward_rfc822.eml").read_bytes()
        )
        # The same original forwarded again is the same engagement.
        client.sendmail(
            "rita@acme.test", [account.forward], (DATA / "forward_rfc822.eml").read_bytes()
        )
    [row] = cli("engagements", "list", account.slug, "--json").splitlines()
    engagement = json.loads(row)
    assert engagement["message_id"] == "<pricing-q-42@umbrella.test>"
    assert engagement["occurred_at"] == "2026-11-05T21:45:00+00:00"
    assert engagement["contacts"] == ["paula@umbrella.test"]


def test_no_forwarded_block_is_ignored_over_smtp(daemon: RunningDaemon, cli: Cli) -> None:
    account = make_account(cli)
    with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=30) as client:
        client.ehlo()
        client.mail("rita@acme.test")
        client.rcpt(account.forward)
        code, text = client.data((DATA / "bcc_simple.eml").read_bytes())
    assert code == 250 and b"not logged: no_forwarded_header" in text
    assert cli("engagements", "list", account.slug, "--json") == ""
