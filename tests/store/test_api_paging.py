"""Paging of the read API in the order rows become visible (migration 0012): every row exactly
once to a client that keeps following next_cursor, also when rows commit out of created_at
order (several writers on PostgreSQL) and after the last page (polling)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from alembic import command
from sqlalchemy import Engine, insert, inspect, text
from sqlmodel import Session, select

from capture_server.store import api_queries
from capture_server.store.api_queries import (
    BadCursor,
    EngagementFilter,
    EventFilter,
    Page,
    cursor_scope,
    decode_cursor,
)
from capture_server.store.db import alembic_config, make_engine, migrate
from capture_server.store.models import Engagement
from capture_server.store.repositories import Store
from tests.conftest import PostgresServer, libpq_url, read_data
from tests.store.test_store import capture, setup_account

Lister = Callable[[str | None, int], Page]


def _message(number: int) -> bytes:
    raw = read_data("bcc_simple.eml")
    return raw.replace(b"<proposal-q3-1@", f"<proposal-q3-{number}@".encode()).replace(
        b"carl@globex.test", f"carl{number}@globex.test".encode()
    )


def _account_id(store: Store) -> int:
    with store._read() as session:
        found = session.execute(text("SELECT id FROM account WHERE slug = 'acme'")).scalar_one()
        return int(found)


def _listers(store: Store, account_id: int) -> dict[str, Lister]:
    return {
        "engagements": lambda cursor, limit: api_queries.engagements_page(
            store, account_id, EngagementFilter(), limit, cursor
        ),
        "contacts": lambda cursor, limit: api_queries.contacts_page(
            store, account_id, None, limit, cursor
        ),
        "events": lambda cursor, limit: api_queries.events_page(
            store, account_id, EventFilter(), limit, cursor
        ),
    }


def _follow(lister: Lister, cursor: str | None, limit: int = 2) -> tuple[list[str], str]:
    """Pages until has_more is false: the ids seen, and the cursor to poll with."""
    seen: list[str] = []
    for _ in range(1000):
        page = lister(cursor, limit)
        assert len(page.items) <= limit
        seen.extend(str(item["id"]) for item in page.items)
        assert page.next_cursor, "a cursor is always given"
        cursor = page.next_cursor
        if not page.has_more:
            return seen, cursor
    raise AssertionError("paging did not end")


def test_every_row_exactly_once_while_paging_and_polling(store: Store) -> None:
    bcc = setup_account(store)
    account_id = _account_id(store)
    listers = _listers(store, account_id)
    # Nothing yet: a cursor to poll with all the same.
    cursors: dict[str, str] = {}
    for name, lister in listers.items():
        empty = lister(None, 5)
        assert (empty.items, empty.has_more) == ([], False)
        cursors[name] = empty.next_cursor
        assert lister(empty.next_cursor, 5).next_cursor == empty.next_cursor  # stays put
    seen: dict[str, list[str]] = {name: [] for name in listers}
    number = 0
    for batch in (3, 0, 4, 1):
        for _ in range(batch):
            number += 1
            capture(store, _message(number), bcc)
        for name, lister in listers.items():
            got, cursors[name] = _follow(lister, cursors[name])
            seen[name].extend(got)
    # The CLI lists by created_at; one writer at a time here, so the same order.
    assert seen["engagements"] == [row["id"] for row in store.engagements("acme")]
    assert len(seen["engagements"]) == number == len(set(seen["engagements"]))
    assert sorted(map(int, seen["contacts"])) == sorted(c["id"] for c in store.contacts("acme"))
    assert len(seen["contacts"]) == number + 2  # carlN, and dana and frank once
    assert len(seen["events"]) == number == len(set(seen["events"]))
    # From the start again, small pages: the same rows in the same order.
    for name, lister in listers.items():
        assert _follow(lister, None, 1)[0] == seen[name]


def test_filters_and_since_follow_the_same_cursor(store: Store) -> None:
    bcc = setup_account(store)
    account_id = _account_id(store)
    for number in range(1, 5):
        capture(store, _message(number), bcc)
    every = [row["id"] for row in store.engagements("acme")]

    def walk(wanted: EngagementFilter) -> list[str]:
        return _follow(
            lambda cursor, limit: api_queries.engagements_page(
                store, account_id, wanted, limit, cursor
            ),
            None,
            1,
        )[0]

    assert walk(EngagementFilter(contact="CARL3@globex.test")) == [every[2]]
    assert walk(EngagementFilter(contact="dana@globex.test")) == every
    assert walk(EngagementFilter(since=datetime(2000, 1, 1, tzinfo=UTC))) == every
    assert walk(EngagementFilter(since=datetime.now(UTC) + timedelta(days=1))) == []
    assert walk(EngagementFilter(kind="forward")) == []


def _encode(body: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(body).encode()).decode().rstrip("=")


def test_old_foreign_and_forged_cursors_are_refused(store: Store) -> None:
    bcc = setup_account(store)
    account_id = _account_id(store)
    capture(store, _message(1), bcc)
    capture(store, _message(2), bcc)
    listers = _listers(store, account_id)
    first = listers["engagements"](None, 1)
    assert first.has_more
    # A cursor of the version that paged on (created_at, id): a clear refusal.
    old = _encode(["engagements", datetime.now(UTC).isoformat(), "eng_x"])
    with pytest.raises(BadCursor, match="earlier version"):
        listers["engagements"](old, 1)
    # Another listing's cursor, garbage, forged shapes.
    contacts_cursor = listers["contacts"](None, 1).next_cursor
    for cursor in (
        contacts_cursor,
        "garbage",
        "",
        _encode({"a": 1}),
        _encode([3, "engagements"]),
        _encode([2, "engagements", "1", datetime.now(UTC).isoformat(), "eng_x"]),
        _encode([2, "engagements", 1, "2026-01-01T00:00:00", "eng_x"]),  # no zone
        _encode([2, "engagements", 1, datetime.now(UTC).isoformat(), 7]),  # an int id
    ):
        if not cursor:
            continue
        with pytest.raises(BadCursor):
            listers["engagements"](cursor, 1)
    with pytest.raises(BadCursor):
        listers["events"](contacts_cursor, 1)
    # A cursor of version 2 (not bound to its filters): told to start again.
    for name, version_2 in (
        ("events", _encode([2, "events"])),
        ("engagements", _encode([2, "engagements", 1, datetime.now(UTC).isoformat(), "eng_x"])),
    ):
        with pytest.raises(BadCursor, match=r"earlier version.*start again without a cursor"):
            listers[name](version_2, 1)
    # The start cursor of an empty listing round-trips.
    start = listers["events"](None, 5).next_cursor
    scope = cursor_scope(account_id, asdict(EventFilter()))
    assert decode_cursor("events", listers["events"](start, 5).next_cursor, scope=scope)


def test_a_cursor_is_bound_to_its_account_and_filters(store: Store) -> None:
    """A cursor followed with other filters (or by another account) named a position of
    another listing: rows were silently skipped. It is refused; the same filters go on."""
    bcc = setup_account(store)
    account_id = _account_id(store)
    for number in range(1, 5):
        capture(store, _message(number), bcc)
    rows = store.engagements("acme")
    every = [row["id"] for row in rows]
    thread = rows[0]["thread_id"]

    def engagements(wanted: EngagementFilter, cursor: str | None, account: int = account_id
                    ) -> Page:  # fmt: skip
        return api_queries.engagements_page(store, account, wanted, 1, cursor)

    by_dana = EngagementFilter(contact="dana@globex.test")
    first = engagements(by_dana, None)
    assert [item["id"] for item in first.items] == every[:1] and first.has_more
    for other in (
        EngagementFilter(),
        EngagementFilter(contact="carl3@globex.test"),
        EngagementFilter(contact="dana@globex.test", kind="bcc"),
        EngagementFilter(contact="dana@globex.test", since=datetime(2000, 1, 1, tzinfo=UTC)),
    ):
        with pytest.raises(BadCursor, match=r"other filters.*start again without a cursor"):
            engagements(other, first.next_cursor)
    # The brief's case: paging one thread, then sending the cursor with another thread.
    in_thread = engagements(EngagementFilter(thread_id=thread), None)
    with pytest.raises(BadCursor, match="other filters"):
        engagements(EngagementFilter(thread_id="thr_other"), in_thread.next_cursor)
    # The same filters (an address in other case, an empty value for none) go on: every
    # row once.
    same = EngagementFilter(contact=" DANA@globex.test", kind="")
    seen, _ = _follow(
        lambda cursor, limit: api_queries.engagements_page(store, account_id, same, limit, cursor),
        first.next_cursor,
        1,
    )
    assert every[:1] + seen == every
    # since given in another zone is the same instant: the same filter.
    since = datetime(2000, 1, 1, tzinfo=UTC)
    at_utc = api_queries.contacts_page(store, account_id, since, 1, None)
    elsewhere = since.astimezone(timezone(timedelta(hours=5)))
    assert api_queries.contacts_page(store, account_id, elsewhere, 1, at_utc.next_cursor).items
    with pytest.raises(BadCursor, match="other filters"):
        api_queries.contacts_page(store, account_id, None, 1, at_utc.next_cursor)
    logged = api_queries.events_page(store, account_id, EventFilter(reason="logged"), 1, None)
    with pytest.raises(BadCursor, match="other filters"):
        api_queries.events_page(store, account_id, EventFilter(), 1, logged.next_cursor)
    # Another account: every listing refuses this account's cursors, also the start ones.
    store.create_account("globex", "G", ["globex.test"], "capture.localhost",
                         store.server_secret())  # fmt: skip
    with store._read() as session:
        other_id = int(
            session.execute(text("SELECT id FROM account WHERE slug = 'globex'")).scalar_one()
        )
    own, theirs = _listers(store, account_id), _listers(store, other_id)
    for name in own:
        for cursor in (own[name](None, 1).next_cursor, own[name](None, 100).next_cursor):
            with pytest.raises(BadCursor, match="another account"):
                theirs[name](cursor, 1)
        assert theirs[name](None, 1).items == []
    with pytest.raises(BadCursor, match="another account"):
        engagements(by_dana, first.next_cursor, other_id)


def test_a_row_committed_late_is_not_missed(engine: Engine, store: Store) -> None:
    """PostgreSQL, several writers: a transaction that wrote a row with an earlier created_at
    commits after a later one, and after a client paged to the end. The client following its
    cursor still gets both, each once (paging on created_at missed the held one)."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite writers take turns: a second writer waits for the first")
    bcc = setup_account(store)
    account_id = _account_id(store)
    capture(store, _message(1), bcc)
    lister = _listers(store, account_id)["engagements"]
    seen, cursor = _follow(lister, None)
    assert len(seen) == 1
    with Session(engine) as session:
        first = session.exec(select(Engagement)).one()
    held_engine = make_engine(engine.url.render_as_string(hide_password=False))
    held = held_engine.connect()
    transaction = held.begin()
    try:
        held.execute(
            insert(Engagement).values(
                id="eng_held", account_id=account_id, dedupe_key="held", content_hash="h",
                kind="bcc", direction="outbound", owner_user_id=first.owner_user_id,
                thread_id="thr_held", subject="held", created_at=datetime.now(UTC),
            )
        )  # fmt: skip
        # A later row commits while the held one is still in flight.
        capture(store, _message(2), bcc)
        later = [row["id"] for row in store.engagements("acme") if row["id"] not in seen]
        assert len(later) == 1
        got, cursor = _follow(lister, cursor)
        assert got == [], "nothing may be listed past a transaction still in progress"
        transaction.commit()
    finally:
        held.close()
        held_engine.dispose()
    got, cursor = _follow(lister, cursor)
    seen += got
    assert sorted(got) == sorted(["eng_held", *later])
    assert got[0] == "eng_held"  # its transaction began first
    capture(store, _message(3), bcc)
    got, cursor = _follow(lister, cursor)
    seen += got
    assert len(got) == 1
    assert _follow(lister, cursor)[0] == []
    assert sorted(seen) == sorted(row["id"] for row in store.engagements("acme"))
    assert len(seen) == len(set(seen)) == 4


def test_a_transaction_open_in_another_database_holds_nothing_back(
    engine: Engine, store: Store, request: pytest.FixtureRequest
) -> None:
    """Transaction ids are the whole server's: a write transaction left open in another
    database of a shared server (or in a test running beside this one) must not hide this
    database's rows. One open in this database still does, even if it wrote nothing yet."""
    if engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL only: SQLite numbers rows itself")
    server: PostgresServer = request.getfixturevalue("postgres")
    other_url = server.create()
    bcc = setup_account(store)
    lister = _listers(store, _account_id(store))["engagements"]
    try:
        with (
            psycopg.connect(libpq_url(other_url)) as elsewhere,
            psycopg.connect(libpq_url(engine.url.render_as_string(hide_password=False))) as here,
        ):
            elsewhere.execute("SELECT pg_current_xact_id()")  # holds a transaction id, open
            capture(store, _message(1), bcc)
            seen, cursor = _follow(lister, None)
            assert len(seen) == 1, "a transaction of another database held the listing back"
            here.execute("SELECT pg_current_xact_id()")
            capture(store, _message(2), bcc)
            assert _follow(lister, cursor)[0] == []
            here.commit()
            got, cursor = _follow(lister, cursor)
            assert len(got) == 1 and got[0] not in seen
            elsewhere.commit()
    finally:
        server.drop(other_url)


def test_rows_before_the_migration_keep_their_order_and_new_ones_follow(
    database_url: str,
) -> None:
    engine = make_engine(database_url)
    try:
        # Back to 0011, write, upgrade: existing rows are numbered in created_at order.
        command.downgrade(alembic_config(engine), "0011_message_id_lower_index")
        assert "sync_seq" not in {c["name"] for c in inspect(engine).get_columns("engagement")}
        store = Store(engine)
        bcc = setup_account(store)
        for number in (1, 2, 3):
            capture(store, _message(number), bcc)
        with engine.connect() as connection:  # the model has sync_seq already: plain SQL
            before = list(
                connection.execute(text("SELECT id FROM engagement ORDER BY created_at, id"))
                .scalars()
                .all()
            )
        assert len(before) == 3
        migrate(engine)
        store = Store(engine)
        account_id = _account_id(store)
        lister = _listers(store, account_id)["engagements"]
        seen, cursor = _follow(lister, None, 1)
        assert seen == before
        capture(store, _message(4), bcc)
        got, _ = _follow(lister, cursor)
        assert len(got) == 1 and got[0] not in before
        with engine.connect() as connection:
            for table in ("engagement", "contact", "capture_event"):
                numbered = connection.execute(
                    text(f"SELECT count(*), count(sync_seq) FROM {table}")
                ).one()
                assert numbered[0] == numbered[1] > 0, table
            if engine.dialect.name == "sqlite":
                triggers = set(
                    connection.execute(
                        text("SELECT name FROM sqlite_master WHERE type = 'trigger'")
                    ).scalars()
                )
                assert {
                    "capture_sync_seq_engagement",
                    "capture_sync_seq_contact",
                    "capture_sync_seq_capture_event",
                } <= triggers, "a batch migration dropped a trigger that numbers rows"
        if engine.dialect.name == "sqlite":
            # As a batch migration rebuilding the table would: the next upgrade puts it back.
            with engine.begin() as connection:
                connection.execute(text("DROP TRIGGER capture_sync_seq_engagement"))
            migrate(engine)
            capture(store, _message(5), bcc)
            got, _ = _follow(lister, cursor)
            assert len(got) == 2, "a row written after the upgrade was never numbered"
    finally:
        engine.dispose()
