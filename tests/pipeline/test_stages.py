"""Pure pipeline tests: realistic messages through every stage, no store and no network."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from capture_server.pipeline.attribute import resolve_user
from capture_server.pipeline.identity import tombstone_hash
from capture_server.pipeline.message import (
    AccountRules,
    Action,
    AddressKind,
    ContactPolicy,
    Direction,
    Kind,
    Reason,
    SharingLevel,
)
from tests.conftest import read_data
from tests.pipeline.helpers import RULES, run, snapshot


def test_bcc_is_logged_outgoing_with_contacts_and_companies() -> None:
    decision = run(read_data("bcc_simple.eml"))
    assert (decision.action, decision.reason) == (Action.LOG, Reason.LOGGED)
    draft = decision.draft
    assert draft is not None
    assert draft.direction is Direction.OUTGOING and draft.owner == "rita@acme.test"
    assert [m.key for m in draft.contacts] == [
        "carl@globex.test", "dana@globex.test", "frank.free@gmail.com"
    ]  # fmt: skip
    assert draft.companies == ("globex.test",)
    assert draft.dedupe_key == "mid:<proposal-q3-1@mail.acme.test>"
    assert [t.stage for t in decision.trace] == [
        "parse", "authenticate", "thread", "attribute", "unwrap", "private", "filter", "match",
        "enrich", "signature", "shape"
    ]  # fmt: skip


def test_html_only_body_becomes_text_and_attachment_is_kept() -> None:
    decision = run(read_data("bcc_html_attachment.eml"))
    assert decision.draft is not None
    email = decision.draft.email
    assert "Hello" in email.body_text and "contract draft" in email.body_text
    assert "<" not in email.body_text and "color:red" not in email.body_text
    [attachment] = email.attachments
    assert (attachment.filename, attachment.content_type) == ("contract.pdf", "application/pdf")
    assert attachment.content.startswith(b"%PDF") and attachment.size == len(attachment.content)


@pytest.mark.parametrize(
    ("fixture", "mail_from", "action", "reason"),
    [
        ("bcc_unknown_sender.eml", "mallory@evil.test", Action.REJECT, Reason.SENDER_NOT_USER),
        ("bcc_internal.eml", "rita@acme.test", Action.IGNORE, Reason.INTERNAL_ONLY),
        ("bcc_auto_reply.eml", "rita@acme.test", Action.IGNORE, Reason.AUTO_REPLY),
        ("bcc_simple.eml", "", Action.IGNORE, Reason.AUTO_REPLY),  # null sender: a bounce
    ],
)
def test_rules_that_stop_a_message(
    fixture: str, mail_from: str, action: Action, reason: Reason
) -> None:
    decision = run(read_data(fixture), mail_from=mail_from)
    assert (decision.action, decision.reason) == (action, reason)
    assert decision.draft is None


def test_envelope_sender_attributes_when_from_is_external() -> None:
    decision = run(read_data("bcc_unknown_sender.eml"), mail_from="rita@acme.test")
    assert decision.action is Action.LOG
    assert decision.draft is not None
    assert decision.draft.direction is Direction.INCOMING
    assert "mallory@evil.test" in [m.key for m in decision.draft.contacts]


def test_role_addresses_are_not_contacts() -> None:
    decision = run(read_data("bcc_role_addresses.eml"))
    assert decision.draft is not None
    assert [m.key for m in decision.draft.contacts] == ["ina@initech.test"]
    assert decision.draft.companies == ("initech.test",)
    [match] = [entry for entry in decision.trace if entry.stage == "match"]
    assert "noreply@globex.test (role address)" in match.detail


def test_never_log_drops_participants_or_the_whole_message() -> None:
    partly = run(read_data("bcc_simple.eml"), snap=snapshot(never_log=frozenset({"globex.test"})))
    assert partly.draft is not None
    assert [m.key for m in partly.draft.contacts] == ["frank.free@gmail.com"]
    assert [m.key for m in partly.draft.email.to] == []
    everyone = frozenset({"globex.test", "frank.free@gmail.com"})
    whole = run(read_data("bcc_simple.eml"), snap=snapshot(never_log=everyone))
    assert (whole.action, whole.reason) == (Action.IGNORE, Reason.NEVER_LOG)
    parent = frozenset({"test", "frank.free@gmail.com"})  # globex.test is under "test"
    subdomain = run(read_data("bcc_simple.eml"), snap=snapshot(never_log=parent))
    assert subdomain.reason is Reason.NEVER_LOG


def test_tombstoned_address_is_never_recreated() -> None:
    dead = frozenset({tombstone_hash(7, "CARL@globex.test")})
    decision = run(read_data("bcc_simple.eml"), snap=snapshot(tombstones=dead))
    assert decision.draft is not None
    assert "carl@globex.test" not in [m.key for m in decision.draft.contacts]


def test_contact_policy_off_associates_existing_only() -> None:
    rules = dataclasses.replace(RULES, contact_policy=ContactPolicy.OFF)
    decision = run(read_data("bcc_simple.eml"), snap=snapshot(rules=rules))
    assert decision.draft is not None and decision.draft.create_contacts is False


def test_body_and_attachment_size_limits() -> None:
    small_body = dataclasses.replace(RULES, max_body_bytes=50)
    decision = run(read_data("bcc_simple.eml"), snap=snapshot(rules=small_body))
    assert (decision.action, decision.reason) == (Action.IGNORE, Reason.BODY_TOO_LARGE)
    small_files = dataclasses.replace(RULES, max_attachment_bytes=10)
    decision = run(read_data("bcc_html_attachment.eml"), snap=snapshot(rules=small_files))
    assert (decision.action, decision.reason) == (Action.LOG, Reason.ATTACHMENT_TOO_LARGE)
    assert decision.draft is not None and decision.draft.email.attachments == ()
    assert "contract.pdf" in decision.warnings[0]


@pytest.mark.parametrize(
    ("level", "subject", "body"),
    [
        (SharingLevel.EVERYTHING, "Proposal for the Q3 rollout", True),
        (SharingLevel.SUBJECT, "Proposal for the Q3 rollout", False),
        (SharingLevel.METADATA, "", False),
    ],
)
def test_sharing_levels(level: SharingLevel, subject: str, body: bool) -> None:
    decision = run(read_data("bcc_simple.eml"), snap=snapshot(sharing={1: level}))
    assert decision.draft is not None
    assert decision.draft.email.subject == subject
    assert bool(decision.draft.email.body_text) is body
    # Identity is the same whatever is hidden, so dedupe still works.
    assert decision.draft.content_hash == run(read_data("bcc_simple.eml")).draft.content_hash  # type: ignore[union-attr]


def test_attribution_precedence() -> None:
    shared = "deals@acme.test"
    snap = snapshot(
        users={
            1: ("rita@acme.test", {shared: AddressKind.ALIAS}),
            2: ("sam@acme.test", {shared: AddressKind.CONNECTED}),
            3: ("tom@acme.test", {"both@acme.test": AddressKind.ALIAS}),
            4: ("uma@acme.test", {"both@acme.test": AddressKind.ALIAS}),
        },
        fallback_owner_id=4,
    )
    assert resolve_user(snap, shared)[0] == 2  # connected inbox beats alias
    assert resolve_user(snap, "Rita@ACME.test")[0] == 1
    assert resolve_user(snap, "both@acme.test") == (
        4,
        "shared address: the account's fallback owner",
    )
    assert resolve_user(snap, "nobody@acme.test")[0] is None


def test_forward_as_attachment_is_the_original() -> None:
    decision = run(read_data("forward_rfc822.eml"), kind=Kind.FORWARD)
    assert decision.action is Action.LOG, decision.trace
    draft = decision.draft
    assert draft is not None
    assert draft.email.sender is not None and draft.email.sender.key == "paula@umbrella.test"
    assert draft.email.subject == "Pricing question"
    assert draft.email.message_id == "<pricing-q-42@umbrella.test>"
    assert draft.direction is Direction.INCOMING and draft.owner == "rita@acme.test"
    assert draft.note == "Logging this one, see below."
    # Cc of the original is not a contact; the rep in To is a user, not a contact.
    assert [m.key for m in draft.contacts] == ["paula@umbrella.test"]


def test_forward_without_a_forwarded_block_is_ignored() -> None:
    decision = run(read_data("bcc_simple.eml"), kind=Kind.FORWARD)
    assert (decision.action, decision.reason) == (Action.IGNORE, Reason.NO_FORWARDED_HEADER)


def test_an_email_without_a_date_is_dated_when_sent_or_received_outside_its_identity() -> None:
    """An activity needs a time: a BCC without Date gets its arrival (the envelope's), a
    forward whose block prints no date the forward's own Date; neither enters the content
    hash, so the same message delivered twice still dedupes."""
    bcc = read_data("bcc_simple.eml").replace(b"Date: Tue, 03 Nov 2026 10:15:00 +0100\n", b"")
    bcc = bcc.replace(b"Message-ID: <proposal-q3-1@mail.acme.test>\n", b"")
    draft = run(bcc).draft
    assert draft is not None and draft.email.occurred_at == datetime(2026, 11, 23, tzinfo=UTC)
    later = run(bcc, received_at=datetime(2026, 11, 24, tzinfo=UTC)).draft
    assert later is not None and later.email.occurred_at == datetime(2026, 11, 24, tzinfo=UTC)
    assert later.dedupe_key == draft.dedupe_key and later.dedupe_key.startswith("sha:")
    forward = read_data("fwd_gmail.eml").replace(b"Date: Thu, Nov 5, 2026 at 4:45 PM\r\n", b"")
    draft = run(forward, kind=Kind.FORWARD).draft
    assert draft is not None and draft.email.sender is not None
    assert draft.email.sender.address == "paula@umbrella.test"
    assert draft.email.occurred_at == datetime(2026, 11, 6, 8, 12, tzinfo=UTC)


def test_unparseable_garbage_does_not_raise() -> None:
    for raw in (b"", b"\x00\xff" * 100, b"From: <<<@@@>>>\r\n\r\n", b"Subject: x\r\n" * 1000):
        decision = run(raw)
        assert decision.action in (Action.REJECT, Action.IGNORE)


def test_rules_defaults_are_documented_values() -> None:
    assert AccountRules().max_deals == 5
    assert AccountRules().max_body_bytes == 2 * 1024 * 1024
    assert AccountRules().max_attachment_bytes == 50 * 1024 * 1024


def test_distribution_lists_are_neither_contacts_nor_companies() -> None:
    """A list on Cc reaches many people, none of whom is the contact (DESIGN.md section 3)."""
    raw = read_data("bcc_simple.eml").replace(
        b"Cc: Dana Buyer <dana@globex.test>, Frank <frank.free@gmail.com>",
        b"Cc: Client Team <procurement-list@lists.client.test>, all-hands@client.test, "
        b"Group <sales@googlegroups.com>, Dana Buyer <dana@globex.test>",
    )
    draft = run(raw).draft
    assert draft is not None
    assert [m.key for m in draft.contacts] == ["carl@globex.test", "dana@globex.test"]
    assert draft.companies == ("globex.test",)


def test_sent_on_behalf_of_is_owned_by_the_sender() -> None:
    """Exchange delegates and shared mailboxes: From the principal, Sender the rep."""
    raw = read_data("bcc_simple.eml").replace(
        b"From: Rita Rep <rita@acme.test>",
        b"From: Victor Exec <victor@acme.test>\nSender: Rita Rep <rita@acme.test>",
    )
    decision = run(raw, mail_from="victor@acme.test")
    assert (decision.action, decision.reason) == (Action.LOG, Reason.LOGGED), decision.trace
    assert decision.draft is not None and decision.draft.owner == "rita@acme.test"
    assert decision.draft.direction is Direction.OUTGOING
    # Nobody else may claim a rep as Sender: without it, still no user.
    stranger = raw.replace(b"Sender: Rita Rep <rita@acme.test>", b"Sender: x@acme.test")
    assert run(stranger, mail_from="victor@acme.test").reason is Reason.SENDER_NOT_USER
