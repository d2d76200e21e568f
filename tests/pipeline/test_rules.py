"""Issue 4's rules at stage level: one realistic message per rule, no store and no network."""

from __future__ import annotations

import pytest

from capture_server.notices import plan_notice
from capture_server.pipeline.identity import tombstone_hash
from capture_server.pipeline.message import Action, AddressKind, Kind, Reason
from capture_server.store.repositories import StoreError
from capture_server.store.rules import never_log_pattern
from tests.conftest import read_data
from tests.pipeline.helpers import run, snapshot

AUTOMATED_FORWARDS = [
    ("rules_forward_list_id.eml", "List-Id"),
    ("rules_forward_precedence_bulk.eml", "Precedence: bulk"),
    ("rules_forward_auto_submitted.eml", "Auto-Submitted: auto-replied"),
    ("rules_forward_x_autoreply.eml", "x-autoreply"),
    ("rules_forward_null_sender.eml", "null Return-Path"),
    ("rules_forward_report.eml", "multipart/report"),
]


@pytest.mark.parametrize(("fixture", "why"), AUTOMATED_FORWARDS)
def test_forwarded_automated_original_is_logged_without_new_contacts(
    fixture: str, why: str
) -> None:
    decision = run(read_data(fixture), Kind.FORWARD)
    assert (decision.action, decision.reason) == (Action.LOG, Reason.LOGGED)
    draft = decision.draft
    assert draft is not None and not draft.create_contacts
    assert draft.email.sender is not None and draft.email.sender.key == "pat@vendor.test"
    unwrap = next(t for t in decision.trace if t.stage == "unwrap")
    assert "original is automated" in unwrap.detail and why in unwrap.detail
    match = next(t for t in decision.trace if t.stage == "match")
    assert "automated original: existing contacts only" in match.detail


def test_forwarded_person_still_creates_the_contact() -> None:
    decision = run(read_data("rules_forward_person.eml"), Kind.FORWARD)
    assert decision.draft is not None and decision.draft.create_contacts
    assert [m.key for m in decision.draft.contacts] == ["pat@vendor.test"]


def test_forwarded_bounce_is_the_original_not_the_mail_it_quotes() -> None:
    decision = run(read_data("rules_forward_report.eml"), Kind.FORWARD)
    assert decision.draft is not None
    assert decision.draft.email.message_id == "<dsn-6@mail.vendor.test>"


@pytest.mark.parametrize(
    ("fixture", "never_log", "action", "reason", "kept"),
    [
        ("rules_bcc_never_log_mixed.eml", {"blocked.test"}, Action.LOG, Reason.LOGGED,
         ["carl@globex.test"]),
        ("rules_bcc_never_log_mixed.eml", {"eve@audit.blocked.test"}, Action.LOG, Reason.LOGGED,
         ["carl@globex.test"]),
        ("rules_bcc_never_log_mixed.eml", {"audit.blocked.test"}, Action.LOG, Reason.LOGGED,
         ["carl@globex.test"]),
        ("rules_bcc_never_log_mixed.eml", {"unblocked.test"}, Action.LOG, Reason.LOGGED,
         ["carl@globex.test", "eve@audit.blocked.test"]),  # a suffix, not a subdomain
        ("rules_bcc_never_log_only.eml", {"blocked.test"}, Action.IGNORE, Reason.NEVER_LOG, None),
    ],
)  # fmt: skip
def test_never_log_exact_address_and_domain_with_subdomains(
    fixture: str, never_log: set[str], action: Action, reason: Reason, kept: list[str] | None
) -> None:
    decision = run(read_data(fixture), snap=snapshot(never_log=frozenset(never_log)))
    assert (decision.action, decision.reason) == (action, reason)
    if kept is None:
        assert decision.draft is None
        return
    assert decision.draft is not None
    assert [m.key for m in decision.draft.contacts] == kept
    email = decision.draft.email
    assert sorted(m.key for m in (*email.to, *email.cc)) == kept  # never-logged dropped


def test_tombstoned_address_is_never_recreated_in_any_case() -> None:
    tomb = frozenset({tombstone_hash(7, "olga.old@initech.test")})
    decision = run(read_data("rules_bcc_tombstone.eml"), snap=snapshot(tombstones=tomb))
    assert decision.action is Action.LOG and decision.draft is not None
    assert [m.key for m in decision.draft.contacts] == ["ina@initech.test"]
    match = next(t for t in decision.trace if t.stage == "match")
    assert "olga.old@initech.test (permanently deleted)" in match.detail


def test_new_alias_attributes_to_its_user() -> None:
    users = {1: ("rita@acme.test", {"rita.sales@acme-mail.test": AddressKind.ALIAS}),
             2: ("sam@acme.test", {})}  # fmt: skip
    decision = run(
        read_data("rules_bcc_alias.eml"), mail_from="rita.sales@acme-mail.test",
        snap=snapshot(users=users),
    )  # fmt: skip
    assert decision.draft is not None and decision.draft.owner == "rita@acme.test"
    stopped = run(read_data("rules_bcc_alias.eml"), mail_from="rita.sales@acme-mail.test")
    assert stopped.reason is Reason.SENDER_NOT_USER


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Eve@Example.COM", "eve@example.com"),
        ("example.com", "example.com"),
        ("@example.com", "example.com"),
        ("*.example.com", "example.com"),
        ("mail.example.co.uk.", "mail.example.co.uk"),
    ],
)
def test_never_log_patterns_are_normalised(raw: str, expected: str) -> None:
    assert never_log_pattern(raw) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "give an address"),
        ("com", "needs a dot"),
        ("exa mple.com", "neither an address nor a domain"),
        ("@", "neither an address nor a domain"),
        ("ann@", "neither an address nor a domain"),
        ("a@b@example.com", "not an email address"),
        ("-bad.example.com", "neither an address nor a domain"),
        ("exa_mple.com", "neither an address nor a domain"),
        ("%.com", "neither an address nor a domain"),
    ],
)
def test_bad_never_log_patterns_are_refused_clearly(raw: str, message: str) -> None:
    with pytest.raises(StoreError, match=message):
        never_log_pattern(raw)


# -- notices: composition is pure --------------------------------------------------------


def _plan(fixture: str, kind: Kind = Kind.FORWARD, mail_from: str = "rita@acme.test",
          **snap: object) -> tuple[object, str]:  # fmt: skip
    from datetime import UTC, datetime

    from capture_server.pipeline.message import CapturedMessage, CaptureTarget, Envelope

    raw = read_data(fixture)
    current = snapshot(**snap)  # type: ignore[arg-type]
    decision = run(raw, kind, mail_from=mail_from, snap=current)
    envelope = Envelope(
        mail_from, "x@capture.localhost", "test", datetime(2026, 11, 23, tzinfo=UTC)
    )
    message = CapturedMessage(envelope, CaptureTarget(7, "acme", kind), raw)
    return plan_notice(decision, message, current, "evt_1")


@pytest.mark.parametrize(
    ("fixture", "snap", "subject"),
    [
        ("bcc_internal.eml", {}, "Not logged: "),
        ("rules_bcc_never_log_only.eml", {"never_log": frozenset({"blocked.test"})},
         "Not logged: Audit documents"),
    ],
)  # fmt: skip
def test_notice_for_internal_and_never_logged_bcc(
    fixture: str, snap: dict[str, object], subject: str
) -> None:
    notice, why = _plan(fixture, Kind.BCC, **snap)
    assert why == "due" and notice is not None
    assert notice.subject.startswith(subject)  # type: ignore[attr-defined]


def test_notice_for_a_forward_without_block_goes_to_the_rep() -> None:
    notice, why = _plan("rules_forward_no_block.eml")
    assert why == "due" and notice is not None
    assert notice.to == "rita@acme.test"  # type: ignore[attr-defined]
    assert notice.subject == "Not logged: please log the call notes"  # type: ignore[attr-defined]
    body = notice.body  # type: ignore[attr-defined]
    assert "Reason: no_forwarded_header" in body and "Reference: evt_1" in body
    assert notice.message_key == "mid:<notes-1@mail.acme.test>"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("fixture", "kind", "mail_from", "snap", "why"),
    [
        ("bcc_simple.eml", Kind.BCC, "rita@acme.test", {}, "no notice for logged"),
        ("bcc_auto_reply.eml", Kind.BCC, "rita@acme.test", {}, "no notice for auto_reply"),
        ("bcc_unknown_sender.eml", Kind.BCC, "mallory@evil.test", {}, "no notice for sender"),
        ("rules_forward_no_block.eml", Kind.FORWARD, "", {}, "automated mail"),
        ("rules_forward_no_block.eml", Kind.FORWARD, "rita@acme.test",
         {"never_log": frozenset({"rita@acme.test"})}, "never-log list"),
    ],
)  # fmt: skip
def test_no_notice_when_it_would_be_wrong(
    fixture: str, kind: Kind, mail_from: str, snap: dict[str, object], why: str
) -> None:
    notice, reason = _plan(fixture, kind, mail_from, **snap)
    assert notice is None and why in reason


@pytest.mark.parametrize("null_sender", ["", "<>"])
def test_null_envelope_sender_is_automated_however_written(null_sender: str) -> None:
    decision = run(read_data("bcc_simple.eml"), mail_from=null_sender)
    assert (decision.action, decision.reason) == (Action.IGNORE, Reason.AUTO_REPLY)
