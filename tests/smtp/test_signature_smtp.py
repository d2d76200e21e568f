"""Issue 11 over real SMTP: signatures fill contacts or become suggestions; duplicates."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import Cli, RunningDaemon, make_account
from tests.smtp.test_daemon import send


def lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def forward(signature: str, mid: str) -> bytes:
    """Rita forwards an email from Jan (a new contact) whose body ends in his signature."""
    text = (
        "From: Rita Rep <rita@acme.test>\r\nTo: forward@capture.localhost\r\n"
        f"Subject: Fwd: Pricing\r\nDate: Fri, 06 Nov 2026 09:12:00 +0100\r\n"
        f"Message-ID: <{mid}@mail.acme.test>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\nFor the account.\r\n\r\n"
        "---------- Forwarded message ---------\r\n"
        "From: Jan Müller <jan.mueller@beispiel.de>\r\n"
        "Date: Thu, Nov 5, 2026 at 4:45 PM\r\nSubject: Pricing\r\n"
        "To: Rita Rep <rita@acme.test>\r\n\r\n\r\n"
        "Hallo Rita,\r\n\r\nwas kosten 110 Lizenzen?\r\n\r\n" + signature.replace("\n", "\r\n")
    )
    return text.encode()


def contact(cli: Cli, address: str) -> dict[str, Any]:
    [found] = [c for c in lines(cli("contacts", "list", "acme", "--json"))
               if address in c["addresses"]]  # fmt: skip
    return found


def test_signature_fills_suggests_and_respects_people(daemon: RunningDaemon, cli: Cli) -> None:
    account = make_account(cli)
    cli("account", "settings", "set", "acme", "signature_confidence", "0.9")
    first = (
        "Mit freundlichen Grüßen\n\nJan Müller\nLeiter Einkauf\nBeispiel GmbH\n"
        "Tel. +49 (0)30 1234567\nwww.beispiel.de\n"
    )
    code, text = send(daemon, forward(first, "sig-1"), [account.forward], "rita@acme.test")
    assert code == 250 and text.startswith(b"2.0.0 queued as eng_"), text
    jan = contact(cli, "jan.mueller@beispiel.de")
    # Sure fields filled; the title (0.85 < 0.9) waits as a suggestion. Old keys unchanged.
    assert {k: jan[k] for k in ("name", "company", "created_by")} == {
        "name": "Jan Müller", "company": "beispiel.de", "created_by": "capture"
    }  # fmt: skip
    assert jan["company_name"] == "Beispiel GmbH"
    assert jan["phone"] == "+49301234567"
    assert jan["website"] == "https://www.beispiel.de"
    assert jan["job_title"] is None
    assert jan["set_by"]["phone"] == "capture"
    [event] = lines(cli("events", "acme", "--json"))
    profile = [t for t in event["trace"] if t["stage"] == "profile"]
    assert profile and "filled company_name, phone, website" in profile[0]["detail"]

    [title] = lines(cli("contacts", "suggestions", "acme", "--json"))
    assert (title["contact"], title["field"], title["value"]) == (
        "jan.mueller@beispiel.de", "job_title", "Leiter Einkauf"
    )  # fmt: skip
    assert 0 < title["confidence"] < 0.9
    assert "accepted" in cli("contacts", "suggestions", "accept", "acme", str(title["id"]))
    jan = contact(cli, "jan.mueller@beispiel.de")
    assert jan["job_title"] == "Leiter Einkauf" and jan["set_by"]["job_title"] == "person"
    again = cli("contacts", "suggestions", "reject", "acme", str(title["id"]), expect=1)
    assert "already accepted" in again and "Traceback" not in again

    # A person sets the phone: capture never overwrites it.
    cli("contact", "set", "acme", "jan.mueller@beispiel.de", "--phone", "+49 30 9999999")
    bad = cli("contact", "set", "acme", "jan.mueller@beispiel.de", "--phone", "12", expect=1)
    assert "international form" in bad and len(bad.strip().splitlines()) == 1
    second = (
        "Viele Grüße\n\nJan Müller\nHead of Purchasing\nBeispiel GmbH\n"
        "Tel. +49 30 5555555\nwww.beispiel-shop.de\n"
    )
    code, _ = send(daemon, forward(second, "sig-2"), [account.forward], "rita@acme.test")
    assert code == 250
    jan = contact(cli, "jan.mueller@beispiel.de")
    assert jan["phone"] == "+49309999999" and jan["set_by"]["phone"] == "person"
    assert jan["job_title"] == "Leiter Einkauf"  # set by a person (accepted)
    # The website differs from one capture set: a suggestion, not an overwrite.
    assert jan["website"] == "https://www.beispiel.de"
    [site] = lines(cli("contacts", "suggestions", "acme", "--json"))
    assert (site["field"], site["value"]) == ("website", "https://www.beispiel-shop.de")
    cli("contacts", "suggestions", "reject", "acme", str(site["id"]))
    assert lines(cli("contacts", "suggestions", "acme", "--json")) == []
    assert contact(cli, "jan.mueller@beispiel.de")["website"] == "https://www.beispiel.de"
    decided = lines(cli("contacts", "suggestions", "acme", "--all", "--json"))
    assert [s["status"] for s in decided] == ["accepted", "rejected"]

    # The rep's own signature in outgoing mail never reaches a contact.
    outgoing = (
        b"From: Rita Rep <rita@acme.test>\r\nTo: Carl Jung <carl@globex.test>\r\n"
        b"Subject: Offer\r\nMessage-ID: <sig-out@mail.acme.test>\r\n"
        b"Date: Tue, 03 Nov 2026 10:15:00 +0100\r\n\r\nOffer attached.\r\n\r\n"
        b"Best regards,\r\nRita Rep\r\nSales Director | Acme Inc\r\n+1 415 555 0100\r\n"
    )
    assert send(daemon, outgoing, [account.bcc], "rita@acme.test")[0] == 250
    carl = contact(cli, "carl@globex.test")
    assert [carl[k] for k in ("job_title", "company_name", "phone")] == [None, None, None]
    assert lines(cli("contacts", "suggestions", "acme", "--json")) == []


def test_duplicates_are_suggested_and_merged(daemon: RunningDaemon, cli: Cli) -> None:
    account = make_account(cli)
    recipients = [
        "John Doe <john.doe@gmail.com>", "<JohnDoe+crm@googlemail.com>",
        "Ann Lee <ann@globex.test>", "Ann Lee <a.lee@globex.test>", "Ann Lee <ann@initech.test>",
    ]  # fmt: skip
    for number, to in enumerate(recipients):
        raw = (
            f"From: Rita Rep <rita@acme.test>\r\nTo: {to}\r\nSubject: Hello {number}\r\n"
            f"Message-ID: <dup-{number}@mail.acme.test>\r\n"
            "Date: Tue, 03 Nov 2026 10:15:00 +0100\r\n\r\nHi.\r\n"
        ).encode()
        assert send(daemon, raw, [account.bcc], "rita@acme.test")[0] == 250
    found = lines(cli("contacts", "duplicates", "acme", "--json"))
    assert [(d["keep"], d["merge"], d["reason"]) for d in found] == [
        ("john.doe@gmail.com", "johndoe+crm@googlemail.com", "same_mailbox"),
        ("ann@globex.test", "a.lee@globex.test", "same_name_and_company"),
    ]
    for pair in found:
        cli("contacts", "merge", "acme", pair["keep"], pair["merge"])
    assert lines(cli("contacts", "duplicates", "acme", "--json")) == []
    merged = contact(cli, "ann@globex.test")
    assert merged["addresses"] == ["ann@globex.test", "a.lee@globex.test"]
    assert len(lines(cli("contacts", "list", "acme", "--json"))) == 3
    assert "Traceback" not in cli("contacts", "duplicates", "nope", expect=1)
