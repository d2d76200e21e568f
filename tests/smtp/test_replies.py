"""Reply capture over real SMTP, on SQLite and PostgreSQL: only replies to logged threads."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, select

from capture_server.store.models import Account as AccountRow
from capture_server.store.models import Contact, Deal, DealContact
from tests.conftest import Account, Cli, RunningDaemon, make_account, read_data
from tests.smtp.test_daemon import engagements, send

CARL = "carl@globex.test"


def events(cli: Cli, slug: str) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in cli("events", slug, "--json").splitlines()]
    return list(reversed(rows))  # oldest first


def log_proposal(daemon: RunningDaemon, account: Account) -> dict[str, Any]:
    """Rita's BCC'd proposal: the logged thread every reply below belongs to (or not)."""
    code, text = send(daemon, read_data("bcc_simple.eml"), [account.bcc], "rita@acme.test")
    assert (code, text[:20]) == (250, b"2.0.0 queued as eng_")
    return {"id": text.decode().split()[3]}  # "2.0.0 queued as eng_…"


def reply(daemon: RunningDaemon, account: Account, name: str, mail_from: str = CARL) -> str:
    code, text = send(daemon, read_data(name), [account.reply], mail_from)
    assert code == 250, text
    return text.decode()


def test_bcc_then_reply_then_unrelated_give_two_engagements_in_one_thread(
    daemon: RunningDaemon, cli: Cli, engine: Engine
) -> None:
    account = make_account(cli)
    # Carl is already in the CRM with an open deal; the deal closes before he replies.
    with Session(engine) as session:
        account_id = session.exec(select(AccountRow.id).where(AccountRow.slug == "acme")).one()
        assert account_id is not None
        carl = Contact(account_id=account_id, primary_address=CARL, created_by="crm")
        deal = Deal(account_id=account_id, name="Q3 rollout")
        session.add(carl)
        session.add(deal)
        session.flush()
        assert carl.id is not None and deal.id is not None
        session.add(DealContact(deal_id=deal.id, contact_id=carl.id))
        session.commit()
        deal_id = deal.id
    log_proposal(daemon, account)
    with Session(engine) as session:
        closed = session.get(Deal, deal_id)
        assert closed is not None
        closed.is_open = False
        session.add(closed)
        session.commit()

    answer = reply(daemon, account, "reply_contact_reply.eml")
    assert answer.startswith("2.0.0 queued as eng_")
    unrelated = reply(daemon, account, "reply_unrelated.eml", "hello@initrode.test")
    assert "not logged: not_a_reply" in unrelated

    first, second = engagements(cli, account.slug)
    assert first["kind"] == "bcc" and first["deals"] == [deal_id]
    assert second["kind"] == "reply"
    assert second["thread_id"] == first["thread_id"]
    assert (second["direction"], second["owner"]) == ("incoming", "rita@acme.test")
    assert second["message_id"] == "<CAKx9f3-reply-1@mail.globex.test>"
    # The thread's contacts (Frank was only on the proposal) plus Gus, new on the reply.
    assert sorted(second["contacts"]) == [
        CARL, "dana@globex.test", "frank.free@gmail.com", "gus@globex.test"
    ]  # fmt: skip
    assert second["companies"] == ["globex.test"]
    assert second["deals"] == [deal_id]  # the thread's deal, though it is closed now
    listed = cli("engagements", "list", account.slug, "--thread", str(first["thread_id"]), "--json")
    assert [json.loads(line)["id"] for line in listed.splitlines()] == [first["id"], second["id"]]
    assert cli("engagements", "list", account.slug, "--thread", "thr_nope", "--json") == ""
    listing = cli("contacts", "list", "acme", "--json").splitlines()
    contacts = {json.loads(line)["addresses"][0] for line in listing}
    assert "hello.irene@initrode.test" not in contacts and "gus@globex.test" in contacts
    last = events(cli, account.slug)[-1]
    assert (last["decision"], last["reason"]) == ("ignore", "not_a_reply")
    assert [t["stage"] for t in last["trace"]] == ["parse", "authenticate", "thread"]


def test_references_in_reply_to_and_changed_subject_all_find_the_thread(
    daemon: RunningDaemon, cli: Cli
) -> None:
    account = make_account(cli)
    log_proposal(daemon, account)
    for name, sender in [
        ("reply_references_only.eml", "dana@globex.test"),
        ("reply_in_reply_to_only.eml", CARL),
        ("reply_changed_subject.eml", CARL),
    ]:
        assert reply(daemon, account, name, sender).startswith("2.0.0 queued as eng_"), name
    rows = engagements(cli, account.slug)
    assert [row["subject"] for row in rows[1:]] == [
        "Re: Proposal for the Q3 rollout",
        "Re: Proposal for the Q3 rollout",
        "Budget approval for next year (was: Q3)",
    ]
    assert len({row["thread_id"] for row in rows}) == 1
    details = [e["trace"][2]["detail"] for e in events(cli, account.slug)[1:]]
    assert "References <proposal-q3-1@mail.acme.test>" in details[0]
    assert "In-Reply-To <proposal-q3-1@mail.acme.test>" in details[1]
    # Carl's first reply was never logged, but Dana's logged reply named it in References.
    assert "In-Reply-To <CAKx9f3-reply-1@mail.globex.test>" in details[2]


def test_subject_fallback_is_off_by_default_and_opt_in(daemon: RunningDaemon, cli: Cli) -> None:
    account = make_account(cli)
    proposal = log_proposal(daemon, account)
    assert "not_a_reply" in reply(daemon, account, "reply_subject_only.eml")
    cli("account", "settings", "set", account.slug, "reply_subject_days", "14")
    # Same message again (an MTA retry): now the subject joins it to the thread.
    assert reply(daemon, account, "reply_subject_only.eml").startswith("2.0.0 queued as eng_")
    assert "not_a_reply" in reply(daemon, account, "reply_unrelated.eml", "hello@initrode.test")
    first, second = engagements(cli, account.slug)
    assert first["id"] == proposal["id"] and second["thread_id"] == first["thread_id"]
    assert "subject matches within 14 day(s)" in events(cli, account.slug)[2]["trace"][2]["detail"]
    cli("account", "settings", "set", account.slug, "reply_subject_days", "1")
    # Nine days after the thread's last message: outside the window.
    late = read_data("reply_subject_only.eml").replace(b"<webmail-5550123@", b"<webmail-late@")
    late = late.replace(b"Sat, 07 Nov 2026", b"Mon, 16 Nov 2026")
    code, text = send(daemon, late, [account.reply], CARL)
    assert code == 250 and b"not_a_reply" in text


def test_auto_replies_and_bounces_are_never_logged(daemon: RunningDaemon, cli: Cli) -> None:
    account = make_account(cli)
    log_proposal(daemon, account)
    contacts_before = cli("contacts", "list", "acme", "--json")
    for name, sender in [
        ("reply_out_of_office.eml", CARL),  # no header says so: the German subject does
        ("reply_auto_submitted.eml", "dana@globex.test"),
        ("reply_bounce.eml", ""),  # null sender, multipart/report, no thread headers
        ("reply_bounce_with_thread.eml", "postmaster@globex.test"),  # subject only
    ]:
        assert "not logged: auto_reply" in reply(daemon, account, name, sender), name
    assert len(engagements(cli, account.slug)) == 1
    assert cli("contacts", "list", "acme", "--json") == contacts_before  # no Olga, no daemon
    reasons = [e["trace"][-1]["detail"] for e in events(cli, account.slug)[1:]]
    assert "abwesenheitsnotiz" in reasons[0]
    assert "Auto-Submitted" in reasons[1]
    assert "null" in reasons[2] and "bounce" in reasons[2]
    assert "delivery status notification" in reasons[3]


def test_same_email_by_several_routes_is_one_engagement(daemon: RunningDaemon, cli: Cli) -> None:
    account = make_account(cli)
    proposal = log_proposal(daemon, account)
    # A mailbox rule copies Rita's sent mail to the reply address too.
    copy = reply(daemon, account, "bcc_simple.eml", "rita@acme.test")
    assert copy == f"2.0.0 Already logged as {proposal['id']}"
    # Rita forgets and forwards it as an attachment.
    raw = read_data("reply_forward_of_logged.eml")
    code, text = send(daemon, raw, [account.forward], "rita@acme.test")
    assert code == 250 and text.decode() == f"2.0.0 Already logged as {proposal['id']}"
    # Carl's reply arrives by Rita's copy and by Sam's (he was not on it, but his rule copies).
    first = reply(daemon, account, "reply_contact_reply.eml")
    again = reply(daemon, account, "reply_contact_reply.eml", "sam@acme.test")
    assert again == f"2.0.0 Already logged as {first.split()[3]}"
    assert [row["kind"] for row in engagements(cli, account.slug)] == ["bcc", "reply"]


def test_reply_to_an_inline_forward_finds_its_thread(daemon: RunningDaemon, cli: Cli) -> None:
    account = make_account(cli)
    forward = read_data("reply_forward_inline.eml")
    code, text = send(daemon, forward, [account.forward], "rita@acme.test")
    assert (code, text[:20]) == (250, b"2.0.0 queued as eng_")
    answer = reply(daemon, account, "reply_after_inline_forward.eml", "hank@hooli.test")
    assert answer.startswith("2.0.0 queued as eng_")
    forwarded, replied = engagements(cli, account.slug)
    assert forwarded["message_id"] is None  # an inline block carries no Message-ID
    assert replied["thread_id"] == forwarded["thread_id"]
    assert replied["contacts"] == ["hank@hooli.test"]


def test_inbound_reply_owner(daemon: RunningDaemon, cli: Cli) -> None:
    account = make_account(cli)
    log_proposal(daemon, account)
    reply(daemon, account, "reply_to_colleague.eml")  # To: Sam
    reply(daemon, account, "reply_envelope_recipient.eml", "dana@globex.test")  # Bcc: Sam
    reply(daemon, account, "reply_no_user.eml", "dana@globex.test")  # no rep on it at all
    rows = engagements(cli, account.slug)
    assert [(row["owner"], row["direction"]) for row in rows[1:]] == [
        ("sam@acme.test", "incoming"),
        ("sam@acme.test", "incoming"),
        ("rita@acme.test", "incoming"),
    ]
    details = [e["trace"][3]["detail"] for e in events(cli, account.slug)[1:]]
    assert "from To/Cc" in details[0]
    assert "x-original-to" in details[1]
    assert "owner of thread" in details[2]


def test_rate_guard_stops_a_reply_storm(daemon: RunningDaemon, cli: Cli) -> None:
    account = make_account(cli)
    log_proposal(daemon, account)
    cli("account", "settings", "set", account.slug, "reply_rate_limit", "2")
    raw = read_data("reply_contact_reply.eml")
    answers = []
    for n in range(4):
        storm = raw.replace(b"<CAKx9f3-reply-1@", f"<CAKx9f3-reply-storm{n}@".encode())
        answers.append(send(daemon, storm, [account.reply], CARL)[1].decode())
    assert [a.startswith("2.0.0 queued as") for a in answers] == [True, True, False, False]
    assert "not logged: reply_rate_limited" in answers[2]
    # Another person on the same thread is not held back by Carl's storm.
    assert reply(daemon, account, "reply_references_only.eml", "dana@globex.test").startswith(
        "2.0.0 queued as"
    )
    assert len(engagements(cli, account.slug)) == 4
