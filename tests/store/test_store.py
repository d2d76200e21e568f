"""The store on SQLite and PostgreSQL: idempotent writes, matching, concurrency, faults."""

from __future__ import annotations

import dataclasses
import threading
from datetime import UTC, datetime

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

from capture_server.pipeline import STAGES, run_pipeline
from capture_server.pipeline.defaults import FREE_MAIL_DOMAINS, ROLE_LOCAL_PARTS
from capture_server.pipeline.message import (
    AccountRules,
    Action,
    CapturedMessage,
    Decision,
    Envelope,
    Reason,
)
from capture_server.smtp import replies
from capture_server.store.db import (
    alembic_config,
    current_revision,
    is_up_to_date,
    make_engine,
    migrate,
)
from capture_server.store.models import Contact, ContactAddress, Deal, DealContact
from capture_server.store.repositories import Store, StoreError, StoreUnavailable, new_id
from tests.conftest import read_data

RULES = AccountRules(role_local_parts=ROLE_LOCAL_PARTS, free_mail_domains=FREE_MAIL_DOMAINS)


def setup_account(store: Store, slug: str = "acme") -> str:
    secret = store.server_secret()
    addresses = store.create_account(slug, "Acme", ["acme.test"], "capture.localhost", secret)
    store.add_user(slug, "rita@acme.test", name="Rita")
    return addresses["bcc_address"]


def capture(store: Store, raw: bytes, rcpt: str) -> tuple[Decision, str | None]:
    target = store.resolve_capture_address(rcpt)
    assert target is not None
    envelope = Envelope("rita@acme.test", rcpt, "test", datetime.now(UTC))
    message = CapturedMessage(envelope, target, raw)
    decision = run_pipeline(message, store.snapshot(target.account_id, (), RULES), STAGES)
    result = store.record(message, decision, new_id("evt"), replies.for_decision)
    return result.decision, result.engagement_id


def test_migrations_are_complete_and_idempotent(engine: Engine) -> None:
    assert is_up_to_date(engine)
    # The newest revision, whichever it is: others add migrations after 0001.
    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    assert migrate(engine) == current_revision(engine) == head


def test_capture_addresses_are_unguessable_and_resolve(store: Store) -> None:
    bcc = setup_account(store, "acme")
    other = store.create_account("globex", "G", ["globex.test"], "capture.localhost",
                                 store.server_secret())  # fmt: skip
    token = bcc.split("@")[0].rsplit("-", 1)[1]
    assert len(token) == 16 and token not in other["bcc_address"]
    target = store.resolve_capture_address(bcc.upper())
    assert target is not None and (target.account_slug, target.kind.value) == ("acme", "bcc")
    assert store.resolve_capture_address("acme-bcc-aaaaaaaaaaaaaaaa@capture.localhost") is None


def test_account_and_user_errors_are_clear(store: Store) -> None:
    setup_account(store)
    with pytest.raises(StoreError, match="already exists"):
        store.create_account("acme", "Again", ["acme.test"], "capture.localhost", "s")
    with pytest.raises(StoreError, match="lower-case"):
        store.create_account("Bad Slug!", "x", ["x.test"], "capture.localhost", "s")
    with pytest.raises(StoreError, match="already exists"):
        store.add_user("acme", "RITA@acme.test")
    with pytest.raises(StoreError, match="not an email address"):
        store.add_user("acme", "rita at acme")
    with pytest.raises(StoreError, match="no account"):
        store.add_user("nope", "x@y.test")


def test_same_message_twice_is_one_engagement(store: Store) -> None:
    bcc = setup_account(store)
    first, first_id = capture(store, read_data("bcc_simple.eml"), bcc)
    second, second_id = capture(store, read_data("bcc_simple.eml"), bcc)
    assert (first.action, first.reason) == (Action.LOG, Reason.LOGGED)
    assert (second.action, second.reason) == (Action.IGNORE, Reason.DUPLICATE)
    assert first_id == second_id
    assert len(store.engagements("acme")) == 1
    reasons = sorted(event["reason"] for event in store.events("acme"))
    assert reasons == ["duplicate", "logged"]


def test_reused_message_id_with_other_content_is_a_new_engagement(store: Store) -> None:
    bcc = setup_account(store)
    raw = read_data("bcc_simple.eml")
    capture(store, raw, bcc)
    other = raw.replace(b"Prices are valid", b"Prices are NOT valid")
    decision, _ = capture(store, other, bcc)
    assert decision.reason is Reason.LOGGED
    assert len(store.engagements("acme")) == 2


def test_concurrent_writers_create_each_row_once(database_url: str) -> None:
    # Separate engines, as separate daemons would have.
    stores = [Store(make_engine(database_url)) for _ in range(4)]
    bcc = setup_account(stores[0])
    raw = read_data("bcc_simple.eml")
    variants = [raw, raw.replace(b"<proposal-q3-1@", b"<proposal-q3-2@")]
    errors: list[BaseException] = []

    def worker(store: Store) -> None:
        try:
            for _ in range(3):
                for variant in variants:
                    capture(store, variant, bcc)
        except BaseException as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    assert len(stores[0].engagements("acme")) == 2
    contacts = stores[0].contacts("acme")
    assert sorted(c["addresses"][0] for c in contacts) == [
        "carl@globex.test", "dana@globex.test", "frank.free@gmail.com"
    ]  # fmt: skip
    for store in stores:
        store.engine.dispose()


def test_contact_matching_primary_then_oldest_additional(store: Store, engine: Engine) -> None:
    bcc = setup_account(store)
    account_id = store.account_id("acme")
    from sqlmodel import Session

    with Session(engine) as session:
        older = Contact(account_id=account_id, primary_address="carl.old@globex.test",
                        name="Carl (old)", created_by="import",
                        created_at=datetime(2020, 1, 1, tzinfo=UTC))  # fmt: skip
        newer = Contact(account_id=account_id, primary_address="carl.new@globex.test",
                        name="Carl (new)", created_by="import",
                        created_at=datetime(2024, 1, 1, tzinfo=UTC))  # fmt: skip
        dana = Contact(account_id=account_id, primary_address="dana@globex.test",
                       name="Dana", created_by="import")  # fmt: skip
        thief = Contact(account_id=account_id, primary_address="someone@globex.test",
                        name="Shares Dana", created_by="import")  # fmt: skip
        session.add_all([older, newer, dana, thief])
        session.flush()
        for contact, address in ((newer, "carl@globex.test"), (older, "carl@globex.test"),
                                 (thief, "dana@globex.test")):  # fmt: skip
            assert contact.id is not None
            session.add(ContactAddress(account_id=account_id, contact_id=contact.id,
                                       address=address))  # fmt: skip
        deal = Deal(account_id=account_id, name="Rollout")
        session.add(deal)
        session.flush()
        assert deal.id is not None and older.id is not None
        session.add(DealContact(deal_id=deal.id, contact_id=older.id))
        session.commit()
        deal_id = deal.id
    capture(store, read_data("bcc_simple.eml"), bcc)
    [engagement] = store.engagements("acme")
    # carl@ is additional on two contacts: the oldest wins; dana@ is someone's primary.
    assert engagement["contacts"] == ["carl.old@globex.test", "dana@globex.test",
                                      "frank.free@gmail.com"]  # fmt: skip
    assert engagement["deals"] == [deal_id]
    by_primary = {c["addresses"][0]: c for c in store.contacts("acme")}
    assert by_primary["carl.old@globex.test"]["addresses"] == [
        "carl.old@globex.test", "carl@globex.test"
    ]  # fmt: skip


def test_attachment_content_is_stored_once(store: Store, engine: Engine) -> None:
    bcc = setup_account(store)
    raw = read_data("bcc_html_attachment.eml")
    capture(store, raw, bcc)
    capture(store, raw.replace(b"contract-draft-7", b"contract-draft-8"), bcc)
    first, second = store.engagements("acme")
    assert first["attachments"] == second["attachments"]
    assert first["attachments"][0]["filename"] == "contract.pdf"
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM blob")).scalar() == 1


def test_an_unreachable_database_is_a_transient_fault(database_url: str) -> None:
    if database_url.startswith("sqlite"):
        broken = "sqlite:////nonexistent-folder/capture.db"
    else:
        broken = database_url.replace("127.0.0.1:5432", "127.0.0.1:1")
    store = Store(make_engine(broken))
    with pytest.raises(StoreUnavailable):
        store.resolve_capture_address("x@capture.localhost")


def test_sharing_level_limits_what_is_stored(store: Store) -> None:
    from capture_server.pipeline.message import SharingLevel

    bcc = setup_account(store)
    store.add_user("acme", "sam@acme.test", sharing=SharingLevel.METADATA)
    raw = read_data("bcc_simple.eml").replace(b"rita@acme.test", b"sam@acme.test")
    capture(store, raw, bcc)
    [engagement] = store.engagements("acme")
    assert (engagement["owner"], engagement["subject"], engagement["body_text"]) == (
        "sam@acme.test", "", ""
    )  # fmt: skip
    assert engagement["contacts"]  # metadata is kept


def test_decision_json_matches_design(store: Store) -> None:
    bcc = setup_account(store)
    decision, _ = capture(store, read_data("bcc_simple.eml"), bcc)
    draft = decision.draft
    assert draft is not None
    keys = set(draft.as_dict())
    assert keys == {"kind", "direction", "owner", "subject", "occurred_at", "message_id", "from",
                    "to", "cc", "body_text", "attachments", "contacts", "companies", "deals",
                    "thread_id", "note", "extracted"}  # fmt: skip
    assert set(store.engagements("acme")[0]) == keys | {"id"}
    assert dataclasses.asdict(decision.trace[0]).keys() == {"stage", "outcome", "detail"}
