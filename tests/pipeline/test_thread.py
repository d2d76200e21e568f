"""The thread stage and what reply capture changes downstream: pure, no store, no network."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from capture_server.account_settings import SettingError, rules_from_json, updated_settings
from capture_server.pipeline.automated import automated_subject
from capture_server.pipeline.identity import tombstone_hash
from capture_server.pipeline.message import (
    AccountSnapshot,
    Action,
    Decision,
    Direction,
    Kind,
    Reason,
    ThreadInfo,
)
from capture_server.pipeline.thread import subject_hash, subject_key, thread_lookup
from tests.conftest import read_data
from tests.pipeline.helpers import RULES, run, snapshot

PROPOSAL = "<proposal-q3-1@mail.acme.test>"
THREAD = ThreadInfo(
    thread_id="thr_proposal",
    owner_user_id=1,
    last_at=datetime(2026, 11, 3, 9, 15, tzinfo=UTC),
    contacts=("carl@globex.test", "dana@globex.test", "frank.free@gmail.com"),
    companies=("globex.test",),
    deals=(41,),
)


def with_thread(
    thread: ThreadInfo = THREAD,
    ids: tuple[str, ...] = (PROPOSAL,),
    base: AccountSnapshot | None = None,
    **rules: int,
) -> AccountSnapshot:
    """A snapshot as Store.snapshot reads it after Rita's proposal was logged."""
    snap = base or snapshot()
    return dataclasses.replace(
        snap,
        known_threads={m.lower(): thread.thread_id for m in ids},
        threads={thread.thread_id: thread},
        rules=dataclasses.replace(RULES, **rules),
    )


def reply(name: str, snap: AccountSnapshot, mail_from: str = "carl@globex.test") -> Decision:
    return run(read_data(name), Kind.REPLY, mail_from, snap)


@pytest.mark.parametrize(
    ("subject", "key", "replied"),
    [
        ("Re: Proposal", "proposal", True),
        ("AW: WG: Proposal", "proposal", True),
        ("RE[2]:  Proposal  for  Q3", "proposal for q3", True),
        ("Réf : Devis", "devis", True),
        ("SV: Tilbud", "tilbud", True),
        ("回复：报价", "报价", True),
        ("Fwd: Proposal", "proposal", False),
        # Prefixes the forwarding tables know (forwarding/tables.py), one list for both.
        ("Svar: Tilbud", "tilbud", True),
        ("Odg: Ponuda", "ponuda", True),
        ("Risp: Offerta", "offerta", True),
        ("Weiterleitung: Angebot", "angebot", False),
        ("Videresend: SV: Tilbud", "tilbud", True),
        ("VS: Tarjous", "tarjous", True),  # Finnish reply (a Danish forward: cut either way)
        ("Proposal: pricing", "proposal: pricing", False),  # a colon, but no prefix
        ("Meeting notes for the very long quarterly review: Re: x", None, False),
        ("", "", False),
    ],
)
def test_subject_key(subject: str, key: str | None, replied: bool) -> None:
    found, was_reply = subject_key(subject)
    assert was_reply is replied
    if key is not None:
        assert found == key
    else:
        assert found == subject.casefold()


@pytest.mark.parametrize(
    "subject",
    [
        "Out of Office: Proposal for the Q3 rollout",
        "Automatic reply: Proposal",
        "Abwesenheitsnotiz: Angebot",
        "Réponse automatique : Devis",
        "Respuesta automática: Propuesta",
        "Risposta automatica: Offerta",
        "Automatisch antwoord: Offerte",
        "Autosvar: Tilbud",
        "Undeliverable: Proposal",
        "Delivery Status Notification (Failure)",
        "Mail delivery failed: returning message to sender",
        "Undelivered Mail Returned to Sender",
        "OUT OF OFFICE",
    ],
)
def test_automated_subjects_in_many_languages(subject: str) -> None:
    assert automated_subject(subject) is not None


@pytest.mark.parametrize(
    "subject",
    ["Out of office next week: can we meet today?", "Re: Proposal", "Delivery dates for Q3", ""],
)
def test_subjects_people_write_are_not_automated(subject: str) -> None:
    assert automated_subject(subject) is None


def test_thread_lookup_reads_ids_subject_and_sender_from_the_headers() -> None:
    lookup = thread_lookup(read_data("reply_changed_subject.eml"))
    assert lookup.message_ids == (
        "<carl-budget-3@mail.globex.test>",
        "<cakx9f3-reply-1@mail.globex.test>",
        PROPOSAL,
    )
    assert lookup.subject_hash is None  # "Budget approval ..." does not read as a reply
    assert lookup.sender == "carl@globex.test"
    fallback = thread_lookup(read_data("reply_subject_only.eml"))
    assert fallback.subject_hash == subject_hash("Proposal for the Q3 rollout")
    assert thread_lookup(b"\xff\xfe garbage without headers").message_ids == ()


def test_reply_to_a_logged_thread_is_logged_with_the_threads_associations() -> None:
    decision = reply("reply_contact_reply.eml", with_thread())
    assert (decision.action, decision.reason) == (Action.LOG, Reason.LOGGED)
    draft = decision.draft
    assert draft.thread_id == "thr_proposal"
    assert (draft.direction, draft.owner) == (Direction.INCOMING, "rita@acme.test")
    assert sorted(m.key for m in draft.contacts) == [
        "carl@globex.test", "dana@globex.test", "frank.free@gmail.com", "gus@globex.test"
    ]  # fmt: skip
    assert draft.companies == ("globex.test",) and draft.deals == (41,)
    assert draft.thread_message_ids == ("<cakx9f3-reply-1@mail.globex.test>", PROPOSAL)
    assert draft.subject_hash == subject_hash("Proposal for the Q3 rollout")
    assert draft.as_dict()["deals"] == [41]


def test_thread_contacts_respect_tombstones_and_never_log() -> None:
    base = snapshot(
        tombstones=frozenset({tombstone_hash(7, "frank.free@gmail.com")}),
        never_log=frozenset({"dana@globex.test"}),
    )
    decision = reply("reply_in_reply_to_only.eml", with_thread(base=base))
    draft = decision.draft
    assert [m.key for m in draft.contacts] == ["carl@globex.test"]


@pytest.mark.parametrize(
    ("fixture", "header"),
    [
        ("reply_references_only.eml", "References <proposal-q3-1@mail.acme.test>"),
        ("reply_in_reply_to_only.eml", "In-Reply-To <proposal-q3-1@mail.acme.test>"),
        ("reply_changed_subject.eml", "References <proposal-q3-1@mail.acme.test>"),
    ],
)
def test_in_reply_to_or_references_place_the_reply(fixture: str, header: str) -> None:
    decision = reply(fixture, with_thread())
    assert decision.action is Action.LOG
    [entry] = [t for t in decision.trace if t.stage == "thread"]
    assert entry.detail == f"reply in thread thr_proposal ({header})"


def test_the_newest_reference_wins_over_the_root() -> None:
    other = ThreadInfo("thr_other", owner_user_id=2, contacts=("carl@globex.test",))
    snap = with_thread()
    snap = dataclasses.replace(
        snap,
        known_threads={**snap.known_threads, "<cakx9f3-reply-1@mail.globex.test>": "thr_other"},
        threads={**snap.threads, "thr_other": other},
    )
    decision = reply("reply_references_only.eml", snap, "dana@globex.test")
    assert decision.draft.thread_id == "thr_other"


def test_new_mail_is_not_a_reply_and_never_refused() -> None:
    for fixture, sender in [("reply_unrelated.eml", "hello@initrode.test"),
                            ("reply_no_user.eml", "dana@globex.test")]:  # fmt: skip
        decision = reply(fixture, snapshot(), sender)
        assert (decision.action, decision.reason) == (Action.IGNORE, Reason.NOT_A_REPLY)


def test_a_thread_known_only_by_id_but_without_engagements_is_not_enough() -> None:
    # A Message-ID noted for an engagement that was purged since: no thread info was read.
    snap = dataclasses.replace(with_thread(), threads={})
    decision = reply("reply_contact_reply.eml", snap)
    assert decision.reason is Reason.NOT_A_REPLY


def test_own_message_id_already_logged_passes_for_the_store_to_deduplicate() -> None:
    snap = with_thread()
    decision = run(read_data("bcc_simple.eml"), Kind.REPLY, "rita@acme.test", snap)
    assert decision.action is Action.LOG and decision.draft is not None
    assert decision.draft.dedupe_key == "mid:" + PROPOSAL
    assert decision.draft.direction is Direction.OUTGOING
    assert "already known in thread thr_proposal" in decision.trace[2].detail


@pytest.mark.parametrize(
    ("fixture", "mail_from", "known"),
    [
        ("reply_out_of_office.eml", "carl@globex.test", True),
        ("reply_auto_submitted.eml", "dana@globex.test", True),
        ("reply_bounce.eml", "", False),
        ("reply_bounce_with_thread.eml", "postmaster@globex.test", True),
        ("reply_bounce_with_thread.eml", "postmaster@globex.test", False),
    ],
)
def test_auto_replies_and_bounces_are_ignored_on_a_thread_or_not(
    fixture: str, mail_from: str, known: bool
) -> None:
    decision = reply(fixture, with_thread() if known else snapshot(), mail_from)
    assert (decision.action, decision.reason) == (Action.IGNORE, Reason.AUTO_REPLY)
    assert decision.draft is None


def test_subject_fallback_off_on_window_and_shared_contact() -> None:
    fixture = "reply_subject_only.eml"
    by_subject = dataclasses.replace(with_thread(ids=()), subject_threads=("thr_proposal",))
    assert reply(fixture, by_subject).reason is Reason.NOT_A_REPLY
    on = with_thread(ids=(), reply_subject_days=14)
    on = dataclasses.replace(on, subject_threads=("thr_proposal",))
    decision = reply(fixture, on)
    assert decision.draft.thread_id == "thr_proposal"
    short = dataclasses.replace(on, rules=dataclasses.replace(on.rules, reply_subject_days=3))
    assert reply(fixture, short).reason is Reason.NOT_A_REPLY
    # The same subject from a stranger to the thread does not join it.
    stranger = read_data(fixture).replace(b"carl@globex.test", b"zed@elsewhere.test")
    assert run(stranger, Kind.REPLY, "zed@elsewhere.test", on).reason is Reason.NOT_A_REPLY


def test_a_changed_subject_is_no_reason_to_drop_a_references_match() -> None:
    snap = with_thread(reply_subject_days=14)  # the fallback on changes nothing here
    decision = reply("reply_changed_subject.eml", snap)
    assert decision.draft.thread_id == "thr_proposal"


def test_rate_guard_counts_the_senders_replies_in_the_thread() -> None:
    busy = dataclasses.replace(THREAD, recent_replies=3)
    decision = reply("reply_contact_reply.eml", with_thread(busy, reply_rate_limit=3))
    assert (decision.action, decision.reason) == (Action.IGNORE, Reason.REPLY_RATE_LIMITED)
    assert reply("reply_contact_reply.eml", with_thread(busy, reply_rate_limit=4)).action is (
        Action.LOG
    )
    assert reply("reply_contact_reply.eml", with_thread(busy, reply_rate_limit=0)).action is (
        Action.LOG
    )
    # A rep's own reply is never held back.
    own = (
        read_data("reply_contact_reply.eml")
        .replace(b'From: "Carl Customer" <carl@globex.test>', b"From: Rita Rep <rita@acme.test>")
        .replace(b"To: Rita Rep <rita@acme.test>", b"To: carl@globex.test")
    )
    decision = run(own, Kind.REPLY, "rita@acme.test", with_thread(busy, reply_rate_limit=3))
    assert decision.action is Action.LOG and decision.draft is not None
    assert decision.draft.direction is Direction.OUTGOING


@pytest.mark.parametrize(
    ("fixture", "mail_from", "owner", "how"),
    [
        ("reply_contact_reply.eml", "carl@globex.test", "rita@acme.test", "from To/Cc"),
        ("reply_to_colleague.eml", "carl@globex.test", "sam@acme.test", "from To/Cc"),
        ("reply_envelope_recipient.eml", "dana@globex.test", "sam@acme.test", "x-original-to"),
        ("reply_no_user.eml", "dana@globex.test", "sam@acme.test", "owner of thread"),
    ],
)
def test_inbound_reply_owner(fixture: str, mail_from: str, owner: str, how: str) -> None:
    # The thread belongs to Sam here, so the thread-owner fallback is told apart from Rita.
    snap = with_thread(
        dataclasses.replace(THREAD, owner_user_id=2),
        ids=(PROPOSAL, "<cakx9f3-reply-1@mail.globex.test>"),
    )
    decision = reply(fixture, snap, mail_from)
    assert decision.draft.owner == owner
    assert decision.draft.direction is Direction.INCOMING
    [entry] = [t for t in decision.trace if t.stage == "attribute"]
    assert how in entry.detail


def test_other_addresses_need_no_thread() -> None:
    decision = run(read_data("bcc_simple.eml"), Kind.BCC, "rita@acme.test", snapshot())
    assert decision.action is Action.LOG
    assert decision.trace[2].stage == "thread" and decision.trace[2].outcome == "skip"


def test_forward_notes_the_forwarding_messages_own_ids() -> None:
    decision = run(read_data("reply_forward_inline.eml"), Kind.FORWARD, "rita@acme.test")
    assert decision.draft is not None and decision.draft.email.message_id is None
    assert decision.draft.thread_message_ids == (
        "<caf-fwd-inline-8@mail.acme.test>",
        "<renewal-100@mail.hooli.test>",
    )


def test_reply_settings_are_validated() -> None:
    stored = updated_settings("{}", "reply_subject_days", "14", RULES)
    assert rules_from_json(stored, RULES).reply_subject_days == 14
    assert RULES.reply_subject_days == 0 and RULES.reply_rate_limit == 10  # the defaults
    with pytest.raises(SettingError, match="greater than or equal to 0"):
        updated_settings("{}", "reply_rate_limit", "-1", RULES)
