"""Admin commands on both databases: account list/show/rotate, contacts merge, events, stats."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Engine, text

from tests.conftest import DATA, Cli, make_account


def lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines()]


def test_account_list_show_and_rotate(cli: Cli) -> None:
    account = make_account(cli)
    make_account(cli, "globex", "globex.test")
    listed = lines(cli("account", "list", "--json"))
    assert [row["slug"] for row in listed] == ["acme", "globex"]
    assert (listed[0]["bcc_address"], listed[0]["users"], listed[0]["domains"]) == (
        account.bcc, 2, ["acme.test"]
    )  # fmt: skip
    rotated = json.loads(cli("account", "rotate", "acme", "--kind", "bcc", "--json"))
    assert rotated["bcc_address"] != account.bcc and rotated["retired"] == [account.bcc]
    assert (rotated["forward_address"], rotated["reply_address"]) == (
        account.forward,
        account.reply,
    )
    # The retired address no longer resolves; the new one does.
    assert "not a capture address" in cli(
        "dry-run", "--rcpt", account.bcc, str(DATA / "bcc_simple.eml"), expect=1
    )
    decided = json.loads(
        cli("dry-run", "--rcpt", rotated["bcc_address"], str(DATA / "bcc_simple.eml"), "--json")
    )
    assert decided["decision"] == "log"
    everything = json.loads(cli("account", "rotate", "acme", "--json"))
    assert len(set(everything["retired"])) == 3 and rotated["bcc_address"] in everything["retired"]
    shown = json.loads(cli("account", "show", "acme", "--json"))
    assert shown["bcc_address"] == everything["bcc_address"]
    assert shown["token_generation"] == 3 and len(shown["retired_addresses"]) == 4
    assert [user["email"] for user in shown["user_list"]] == ["rita@acme.test", "sam@acme.test"]
    assert "retired bcc " + account.bcc in cli("account", "show", "acme")
    assert "acme.test" in cli("account", "list")
    assert "no account 'nope'" in cli("account", "rotate", "nope", expect=1)
    assert "no account 'nope'" in cli("account", "show", "nope", expect=1)


def test_contacts_merge_moves_addresses_engagements_and_deals(cli: Cli, engine: Engine) -> None:
    account = make_account(cli)
    cli("ingest", "--rcpt", account.bcc, str(DATA / "bcc_simple.eml"))  # Carl, Dana, Frank
    cli("deal", "add", "acme", "Globex rollout", "--contact", "carl@globex.test",
        "--contact", "dana@globex.test")  # fmt: skip
    cli("deal", "add", "acme", "Dana's pilot", "--contact", "dana@globex.test")
    [engagement] = lines(cli("engagements", "list", "acme", "--json"))
    report = json.loads(
        cli("contacts", "merge", "acme", "CARL@globex.test", "dana@globex.test", "--json")
    )
    assert report["addresses"] == ["carl@globex.test", "dana@globex.test"]
    assert (report["engagements_moved"], report["deals_moved"]) == (1, 2)
    contacts = lines(cli("contacts", "list", "acme", "--json"))
    assert [c["addresses"] for c in contacts] == [
        ["carl@globex.test", "dana@globex.test"], ["frank.free@gmail.com"]
    ]  # fmt: skip
    with engine.connect() as connection:
        links = connection.execute(
            text("SELECT contact_id, count(*) FROM engagement_contact GROUP BY contact_id")
        ).all()
        deal_links = connection.execute(
            text("SELECT deal_id, contact_id FROM deal_contact ORDER BY deal_id")
        ).all()
    assert sorted(n for _, n in links) == [1, 1]  # Carl and Frank, once each: no duplicate row
    assert [contact for _, contact in deal_links] == [report["id"], report["id"]]
    # History stays as sent: the engagement still names Dana as a recipient.
    [after] = lines(cli("engagements", "list", "acme", "--json"))
    assert after["to"] == engagement["to"] and after["contacts"] == [
        "carl@globex.test", "frank.free@gmail.com"
    ]  # fmt: skip
    # Dana's address now finds Carl: a second merge is refused, clearly.
    output = cli("contacts", "merge", "acme", "carl@globex.test", "dana@globex.test", expect=1)
    assert "same contact" in output and "Traceback" not in output
    assert "no contact ghost@globex.test" in cli(
        "contacts", "merge", "acme", "carl@globex.test", "ghost@globex.test", expect=1
    )
    assert "not an email address" in cli("contacts", "merge", "acme", "carl", "x", expect=1)
    assert "merged into carl@globex.test" in cli(
        "contacts", "merge", "acme", "carl@globex.test", "frank.free@gmail.com"
    )


def test_events_filters_show_and_stats(cli: Cli) -> None:
    account = make_account(cli)
    for name in ("bcc_simple.eml", "bcc_internal.eml", "bcc_unknown_sender.eml"):
        cli("ingest", "--rcpt", account.bcc, str(DATA / name))
    cli("ingest", "--rcpt", account.bcc, "--mail-from", "bounce@relay.test",
        str(DATA / "bcc_auto_reply.eml"))  # fmt: skip
    everything = lines(cli("events", "acme", "--json"))
    assert len(everything) == 4

    def reasons(*args: str) -> list[str]:
        return [row["reason"] for row in lines(cli("events", "acme", *args, "--json"))]

    assert reasons("--reason", "internal_only") == ["internal_only"]
    assert reasons("--decision", "reject") == ["sender_not_user"]
    assert sorted(reasons("--decision", "ignore")) == ["auto_reply", "internal_only"]
    # --sender: the envelope sender, or the From header, or a domain.
    assert reasons("--sender", "bounce@relay.test") == ["auto_reply"]
    assert len(reasons("--sender", "rita@acme.test")) == 3
    assert reasons("--sender", "relay.test") == ["auto_reply"]
    assert len(reasons("--since", "1h")) == 4 and reasons("--since", "2999-01-01") == []
    assert len(reasons("--limit", "1")) == 1
    assert "--since 'soon'" in cli("events", "acme", "--since", "soon", expect=1)
    assert "--reason 'nope'" in cli("events", "acme", "--reason", "nope", expect=1)
    # events show: the whole trace of one message, found by the id in its SMTP reply.
    internal = next(row for row in everything if row["reason"] == "internal_only")
    assert internal["id"] in internal["smtp_reply"] and internal["from"] == "rita@acme.test"
    shown = json.loads(cli("events", "show", "acme", internal["id"], "--json"))
    assert shown == internal
    printed = cli("events", "show", "acme", internal["id"])
    assert "trace:" in printed and all(entry["stage"] in printed for entry in shown["trace"])
    assert "no event evt_nope" in cli("events", "show", "acme", "evt_nope", expect=1)
    make_account(cli, "globex", "globex.test")
    assert "no event" in cli("events", "show", "globex", internal["id"], expect=1)

    stats = json.loads(cli("stats", "acme", "--json"))
    assert stats["messages"] == 4
    assert stats["by_decision"] == {"log": 1, "ignore": 2, "reject": 1}
    assert {(r["decision"], r["reason"]) for r in stats["by_reason"]} == {
        ("log", "logged"), ("ignore", "internal_only"), ("ignore", "auto_reply"),
        ("reject", "sender_not_user"),
    }  # fmt: skip
    assert (stats["engagements"], stats["contacts"], stats["companies"]) == (1, 3, 1)
    assert stats["top_senders"][0] == {"address": "rita@acme.test", "messages": 3}
    later = json.loads(cli("stats", "acme", "--since", "2999-01-01T00:00", "--json"))
    assert (later["messages"], later["engagements"], later["top_senders"]) == (0, 0, [])
    assert "top sender" in cli("stats", "acme")
