"""Nested forwards: the innermost original by default, or the outermost external sender."""

from __future__ import annotations

import dataclasses
from email.message import EmailMessage
from email.policy import SMTP

import pytest

from capture_server.pipeline.message import Action, ForwardOriginal, Kind
from tests.pipeline.helpers import RULES, run, snapshot


def mail(
    sender: str, to: str, subject: str, body: str, attached: EmailMessage | None = None
) -> EmailMessage:
    made = EmailMessage()
    made["From"], made["To"], made["Subject"] = sender, to, subject
    made["Date"] = "Thu, 05 Nov 2026 16:45:00 +0000"
    made["Message-ID"] = f"<{abs(hash((sender, subject)))}@test>"
    made.set_content(body)
    if attached is not None:
        made.add_attachment(attached)  # message/rfc822, 7bit, as clients should send it
    return made


def message(
    sender: str, to: str, subject: str, body: str, attached: EmailMessage | None = None
) -> bytes:
    return mail(sender, to, subject, body, attached).as_bytes(policy=SMTP)


def nested() -> bytes:
    """Rita forwards Xavier's forward of Yvonne's original (two external senders)."""
    yvonne = mail("Yvonne <yvonne@supplier.test>", "xavier@partner.test", "Quote", "Our quote.")
    xavier = mail("Xavier <xavier@partner.test>", "rita@acme.test", "Fwd: Quote",
                  "Rita, see Yvonne's quote below.", yvonne)  # fmt: skip
    return message("Rita <rita@acme.test>", "fwd@capture.localhost", "Fwd: Fwd: Quote",
                   "For the account.", xavier)  # fmt: skip


INLINE = b"""From: Rita <rita@acme.test>
To: fwd@capture.localhost
Subject: Fwd: Fwd: Quote
Message-ID: <inline-nested@acme.test>

For the account.

---------- Forwarded message ---------
From: Xavier <xavier@partner.test>
Date: Thu, Nov 5, 2026 at 4:45 PM
Subject: Fwd: Quote
To: Rita <rita@acme.test>

Rita, see Yvonne's quote below.

---------- Forwarded message ---------
From: Yvonne <yvonne@supplier.test>
Date: Wed, Nov 4, 2026 at 9:00 AM
Subject: Quote
To: Xavier <xavier@partner.test>

Our quote.
"""


@pytest.mark.parametrize("raw", [nested(), INLINE], ids=["rfc822", "inline"])
@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (ForwardOriginal.INNERMOST, "yvonne@supplier.test"),
        (ForwardOriginal.OUTERMOST_EXTERNAL, "xavier@partner.test"),
    ],
)
def test_which_original_of_a_nested_forward(
    raw: bytes, choice: ForwardOriginal, expected: str
) -> None:
    rules = dataclasses.replace(RULES, forward_original=choice)
    decision = run(raw, kind=Kind.FORWARD, snap=snapshot(rules=rules))
    assert decision.action is Action.LOG, decision.trace
    assert decision.draft is not None and decision.draft.email.sender is not None
    assert decision.draft.email.sender.key == expected


def test_outermost_external_skips_a_colleague() -> None:
    """Sam (a user) forwarded Yvonne's mail to Rita: the outermost external sender is Yvonne."""
    yvonne = mail("Yvonne <yvonne@supplier.test>", "sam@acme.test", "Quote", "Our quote.")
    sam = mail("Sam <sam@acme.test>", "rita@acme.test", "Fwd: Quote", "FYI", yvonne)
    raw = message("Rita <rita@acme.test>", "fwd@capture.localhost", "Fwd: Fwd: Quote", "", sam)
    rules = dataclasses.replace(RULES, forward_original=ForwardOriginal.OUTERMOST_EXTERNAL)
    decision = run(raw, kind=Kind.FORWARD, snap=snapshot(rules=rules))
    assert decision.draft is not None and decision.draft.email.sender is not None
    assert decision.draft.email.sender.key == "yvonne@supplier.test"


@pytest.mark.parametrize("encoding", ["base64", "quoted-printable"])
def test_encoded_attached_message_is_still_the_original(encoding: str) -> None:
    """RFC 2046 forbids it, yet some clients encode message/rfc822 parts."""
    import base64
    import quopri

    original = message("Yvonne <yvonne@supplier.test>", "rita@acme.test", "Quote", "Our quote.")
    encoded = (
        base64.encodebytes(original) if encoding == "base64" else quopri.encodestring(original)
    )
    raw = (
        b"From: Rita <rita@acme.test>\r\nTo: fwd@capture.localhost\r\nSubject: Fwd: Quote\r\n"
        b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nFor the account.\r\n"
        b"--b\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: "
        + encoding.encode()
        + b"\r\n\r\n"
        + encoded
        + b"\r\n--b--\r\n"
    )
    decision = run(raw, kind=Kind.FORWARD)
    assert decision.draft is not None and decision.draft.email.sender is not None
    assert decision.draft.email.sender.key == "yvonne@supplier.test"
    assert decision.draft.email.subject == "Quote"


def test_an_address_cut_by_a_line_break_is_no_contact() -> None:
    """A flowed line cut "carol.longname@client.test" in two; the pieces are no address."""
    raw = (
        b"From: Rita Rep <rita@acme.test>\r\nTo: forward@capture.localhost\r\n"
        b"Subject: Fwd: Pricing\r\nDate: Fri, 06 Nov 2026 09:12:00 +0100\r\n"
        b"Message-ID: <fwd-cut@acme.test>\r\n\r\nFor the account.\r\n\r\n"
        b"---------- Forwarded message ---------\r\n"
        b"From: Paula Prospect <paula@umbrella.test>\r\n"
        b"Date: Thu, Nov 5, 2026 at 4:45 PM\r\nSubject: Pricing\r\n"
        b"To: Rita Rep <rita@acme.test>, Carol Longname <carol.longname@cli ent.test>\r\n"
        b"\r\n\r\nHi Rita,\r\n\r\nwhat would 110 seats cost?\r\n\r\nPaula\r\n"
    )
    draft = run(raw, kind=Kind.FORWARD).draft
    assert draft is not None and draft.email.sender is not None
    assert draft.email.sender.address == "paula@umbrella.test"
    assert [m.key for m in draft.contacts] == ["paula@umbrella.test"]
    assert all(" " not in m.address for m in draft.email.to)


def test_several_attached_messages_log_the_first_and_say_so() -> None:
    """Gmail's "forward as attachment" of three mails: one engagement, and a warning (in the
    capture event and dry-run) instead of two silently lost."""
    made = mail("Rita <rita@acme.test>", "fwd@capture.localhost", "Fwd: three", "Log these.")
    for who in ("bob@client.test", "zed@other.test", "yan@third.test"):
        made.add_attachment(mail(f"<{who}>", "rita@acme.test", f"Question from {who}", "Hi"))
    decision = run(made.as_bytes(policy=SMTP), kind=Kind.FORWARD)
    assert decision.action is Action.LOG and decision.draft is not None
    assert decision.draft.email.sender is not None
    assert decision.draft.email.sender.address == "bob@client.test"
    assert decision.warnings == (
        "2 more attached message(s) not logged: forward them one at a time",
    )
