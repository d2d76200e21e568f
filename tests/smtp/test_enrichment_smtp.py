"""Issue 11 over real SMTP: private messages, deal references and extractors."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import Cli, RunningDaemon, make_account
from tests.smtp.test_daemon import engagements, send


def lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def message(subject: str, body: str, *, to: str = "carl@globex.test", sender: str = "rita",
            domain: str = "acme.test", extra: str = "", mid: str = "") -> bytes:  # fmt: skip
    headers = (
        f"From: Rita Rep <{sender}@{domain}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n"
        f"Date: Tue, 03 Nov 2026 10:15:00 +0100\r\n"
        f"Message-ID: <{mid or abs(hash((subject, body, to)))}@mail.{domain}>\r\n{extra}"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    )
    return (headers + body + "\r\n").encode()


def test_private_messages_stay_out_of_the_store(daemon: RunningDaemon, cli: Cli) -> None:
    account = make_account(cli)
    private = [
        message("[PRIVATE] my salary", "Just between us."),
        message("Lunch", "Not for the CRM.", extra="X-Capture-Private: yes\r\n"),
        message("[secret] plans", "Hidden.", mid="tagged"),
    ]
    cli("account", "settings", "set", "acme", "private_subject_tags", '["[private]","[secret]"]')
    for raw in private:
        code, text = send(daemon, raw, [account.bcc], "rita@acme.test")
        assert code == 250 and b"not logged: private" in text, text
    assert engagements(cli, "acme") == []
    assert lines(cli("contacts", "list", "acme", "--json")) == []
    events = lines(cli("events", "acme", "--json"))
    assert [e["reason"] for e in events] == ["private"] * 3
    # Nothing of the message is recorded: no subject, no Message-ID, the marker only.
    assert all(e["subject"] == "" and e["message_id"] is None for e in events)
    assert all("salary" not in json.dumps(e["trace"]) for e in events)
    assert {e["trace"][-1]["detail"] for e in events} == {
        "marked private: subject tag '[private]'",
        "marked private: X-Capture-Private: yes",
        "marked private: subject tag '[secret]'",
    }
    # Without the marker the same rep's mail is logged; a "no" header is no marker.
    plain = message("Lunch", "Logged.", extra="X-Capture-Private: no\r\n", mid="plain")
    code, text = send(daemon, plain, [account.bcc], "rita@acme.test")
    assert code == 250 and text.startswith(b"2.0.0 queued as eng_")


def test_deal_references_and_extractors(daemon: RunningDaemon, cli: Cli) -> None:
    account = make_account(cli)
    other = make_account(cli, "other", "other.test")
    # Contacts to hang deals on: carl in acme, and one in the other account.
    assert send(daemon, message("Hello", "Hi."), [account.bcc], "rita@acme.test")[0] == 250
    assert send(daemon, message("Hi", "Hi.", domain="other.test"), [other.bcc],
                "rita@other.test")[0] == 250  # fmt: skip
    mine = json.loads(cli("deal", "add", "acme", "Renewal", "--contact", "carl@globex.test",
                          "--json"))["id"]  # fmt: skip
    foreign = json.loads(cli("deal", "add", "other", "Theirs", "--contact", "carl@globex.test",
                             "--json"))["id"]  # fmt: skip

    cli("extractor", "add", "acme", "order", r"order\s*#?\s*(\d{5,})")
    cli("extractor", "add", "acme", "ticket", r"\b(TCK-\d+)\b")
    refused = cli("extractor", "add", "acme", "bad", r"(a)\1", expect=1)
    assert "does not compile with re2" in refused and "Traceback" not in refused
    assert len(refused.strip().splitlines()) == 1
    assert "error:" in cli("extractor", "add", "acme", "Bad Name", "x", expect=1)
    assert [e["name"] for e in lines(cli("extractor", "list", "acme", "--json"))] == [
        "order",
        "ticket",
    ]

    # zed is on no deal: only the references link deals. #D-<foreign> is another account's.
    body = f"Order #123456 and order 777777 shipped; see TCK-42 and tck-42. #D-{foreign} #D-999999"
    raw = message(f"Re: shipping [deal:{mine}]", body, to="zed@initech.test")
    code, text = send(daemon, raw, [account.bcc], "rita@acme.test")
    assert code == 250 and text.startswith(b"2.0.0 queued as eng_"), text
    logged = {e["subject"]: e for e in engagements(cli, "acme")}
    engagement = logged[f"Re: shipping [deal:{mine}]"]
    assert engagement["deals"] == [mine]
    assert engagement["extracted"] == {
        "order": ["123456", "777777"],
        "ticket": ["TCK-42", "tck-42"],
    }
    assert logged["Hello"]["extracted"] == {}
    [event] = lines(cli("events", "acme", "--limit", "1", "--json"))
    [references] = [t for t in event["trace"] if t["stage"] == "references"]
    assert references["outcome"] == "warn"
    assert (
        references["detail"] == f"linked deal(s) {mine}; no deal {foreign}, 999999 in this account"
    )
    # The other account's deal got nothing from acme's mail.
    assert all(foreign not in e["deals"] for e in engagements(cli, "acme"))

    # dry-run shows what would be extracted, before any write.
    path = daemon.log_path.parent / "dry.eml"
    path.write_bytes(message("order 55555 [deal:1]", "x", to="zed@initech.test", mid="dry"))
    [decision] = lines(cli("dry-run", "--rcpt", account.bcc, str(path), "--json"))
    assert decision["engagement"]["extracted"] == {"order": ["55555"]}
    assert 1 in decision["engagement"]["deals"]

    cli("extractor", "remove", "acme", "ticket")
    assert "no extractor" in cli("extractor", "remove", "acme", "ticket", expect=1)
    assert engagements(cli, "acme")[-1]["extracted"]["ticket"][0] == "TCK-42"  # values stay
