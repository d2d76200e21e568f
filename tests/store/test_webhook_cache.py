"""The webhook list is cached with the account: no read per message, changes still apply."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, event, text

from capture_server.config import load_settings
from capture_server.pipeline import STAGES, run_pipeline
from capture_server.pipeline.message import Action, CapturedMessage, CaptureTarget, Envelope
from capture_server.smtp import replies
from capture_server.store import webhooks
from capture_server.store.cache import account_version, install_triggers, trigger_name
from capture_server.store.db import alembic_config, make_engine
from capture_server.store.repositories import RecordResult, Store, new_id
from tests.conftest import Cli, PostgresServer
from tests.store.test_store import RULES, setup_account

URL = "http://127.0.0.1:9/hook"
WEBHOOK = re.compile(r"\bwebhook\b", re.IGNORECASE)  # the table, not webhook_delivery
WEBHOOK_TRIGGERS = {trigger_name("webhook", op) for op in ("insert", "update", "delete")}


class Trace:
    """Every statement the driver runs while `on`, those of store/cursor_sql.py included."""

    def __init__(self) -> None:
        self.on = False
        self.statements: list[str] = []

    def add(self, sql: Any) -> None:
        if self.on:
            self.statements.append(str(sql))


def traced_engine(database_url: str, trace: Trace) -> Engine:
    """An engine whose connections report to `trace`: SQLite's trace callback; psycopg's
    cursors (SQLAlchemy's cursor events miss the statements cursor_sql runs itself)."""
    engine = make_engine(database_url)

    @event.listens_for(engine, "connect")
    def connected(dbapi_connection: Any, _record: Any) -> None:
        if engine.dialect.name == "sqlite":
            dbapi_connection.set_trace_callback(trace.add)
            return
        base = dbapi_connection.cursor_factory

        class Traced(base):  # type: ignore[misc, valid-type]
            def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
                trace.add(query)
                return super().execute(query, params, **kwargs)

            def executemany(self, query: Any, params_seq: Any, **kwargs: Any) -> Any:
                trace.add(query)
                return super().executemany(query, params_seq, **kwargs)

        dbapi_connection.cursor_factory = Traced

    return engine


@pytest.fixture
def traced(database_url: str) -> Iterator[tuple[Engine, Trace]]:
    trace = Trace()
    engine = traced_engine(database_url, trace)
    yield engine, trace
    engine.dispose()


def raw_message(number: int) -> bytes:
    return (
        "From: Rita Rep <rita@acme.test>\r\nTo: Carl <carl@globex.test>\r\n"
        f"Subject: Proposal {number}\r\nDate: Tue, 03 Nov 2026 10:15:00 +0100\r\n"
        f"Message-ID: <proposal-{number}@mail.acme.test>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"Offer number {number}.\r\n"
    ).encode()


def capture(store: Store, number: int, target: CaptureTarget) -> RecordResult:
    """As the daemon does: the target of RCPT, its version for the snapshot and the record."""
    envelope = Envelope("rita@acme.test", "bcc", "test", datetime.now(UTC))
    message = CapturedMessage(envelope, target, raw_message(number))
    snapshot = store.snapshot(target.account_id, (), RULES, version=target.account_version)
    decision = run_pipeline(message, snapshot, STAGES)
    assert decision.action is Action.LOG, decision.reason
    result = store.record(message, decision, new_id("evt"), replies.for_decision)
    assert result.engagement_id is not None
    return result


def resolve(store: Store, bcc: str) -> CaptureTarget:
    target = store.resolve_capture_address(bcc)
    assert target is not None and target.account_version is not None
    return target


def outbox(engine: Engine, result: RecordResult) -> list[int]:
    """The webhooks told of this engagement."""
    with engine.connect() as connection:
        return list(
            connection.execute(
                text("SELECT webhook_id FROM webhook_delivery WHERE idempotency_key = :key "
                     "ORDER BY webhook_id"),
                {"key": f"{webhooks.ENGAGEMENT_CREATED}:{result.engagement_id}"},
            ).scalars()
        )  # fmt: skip


def version_of(engine: Engine, account_id: int) -> int:
    from sqlmodel import Session

    with Session(engine) as session:
        return account_version(session, account_id)


def triggers(connection: Connection) -> set[str]:
    if connection.dialect.name == "sqlite":
        query = "SELECT name FROM sqlite_master WHERE type = 'trigger'"
    else:
        query = "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"
    return set(connection.exec_driver_sql(query).scalars())


def test_no_webhook_read_per_message_once_the_account_is_cached(
    traced: tuple[Engine, Trace],
) -> None:
    engine, trace = traced
    store = Store(engine)
    bcc = setup_account(store)
    hook = webhooks.add_webhook(store, "acme", URL, [])
    assert outbox(engine, capture(store, 0, resolve(store, bcc))) == [hook["id"]]  # warm

    trace.on = True
    results = [capture(store, number, resolve(store, bcc)) for number in (1, 2, 3)]
    trace.on = False
    assert [outbox(engine, result) for result in results] == [[hook["id"]]] * 3
    # The trace sees the capture path (cursor_sql's event insert, the ORM's outbox rows)...
    assert any("capture_event" in sql for sql in trace.statements), trace.statements
    assert any("webhook_delivery" in sql for sql in trace.statements), trace.statements
    # ... and no statement on the webhook table: the list came from the account's cache.
    assert [sql for sql in trace.statements if WEBHOOK.search(sql)] == []


def test_added_and_removed_webhooks_apply_from_the_next_message(engine: Engine) -> None:
    daemon, admin = Store(engine), Store(engine)  # the daemon's cache, the CLI's process
    bcc = setup_account(admin)
    assert outbox(engine, capture(daemon, 0, resolve(daemon, bcc))) == []  # none, cached

    hook = webhooks.add_webhook(admin, "acme", URL, [])  # what `webhook add` runs
    assert outbox(engine, capture(daemon, 1, resolve(daemon, bcc))) == [hook["id"]]
    assert outbox(engine, capture(daemon, 2, resolve(daemon, bcc))) == [hook["id"]]

    # A message whose RCPT came before the removal (its account cached with the webhook)
    # and whose write comes after: no outbox row for the removed webhook, and no failure.
    # On SQLite the removed id is taken again at once, by another account's webhook.
    decided_before = resolve(daemon, bcc)
    assert webhooks.remove_webhook(admin, "acme", str(hook["id"])) == 1
    admin.create_account("globex", "G", ["globex.test"], "capture.localhost",
                         admin.server_secret())  # fmt: skip
    other = webhooks.add_webhook(admin, "globex", "http://127.0.0.1:9/globex", [])
    late = capture(daemon, 3, decided_before)
    assert outbox(engine, late) == []
    assert outbox(engine, capture(daemon, 4, resolve(daemon, bcc))) == []
    with engine.connect() as connection:
        told_other = connection.execute(
            text("SELECT count(*) FROM webhook_delivery WHERE webhook_id = :id"),
            {"id": other["id"]},
        ).scalar()
    assert told_other == 0


def test_delivery_bookkeeping_leaves_the_account_version_alone(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    daemon, admin = Store(engine), Store(engine)
    bcc = setup_account(admin)
    hook = webhooks.add_webhook(admin, "acme", URL, [])
    target = resolve(daemon, bcc)
    assert outbox(engine, capture(daemon, 0, target)) == [hook["id"]]
    before = version_of(engine, target.account_id)

    settings = load_settings(database_url=database_url, quarantine_dir=tmp_path / "q")
    due = webhooks.claim_due(admin, 30)
    assert due
    for item in due:  # a failed attempt, then the operator's retry
        assert webhooks.finish(admin, item, 500, "HTTP 500", settings) == "pending"
    webhooks.retry(admin, "acme", [item.id for item in due])
    # Columns of a webhook no cache holds (read at delivery): a new URL or secret.
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE webhook SET url = :url, secret = 'whsec_new' WHERE id = :id"),
            {"url": "http://127.0.0.1:9/moved", "id": hook["id"]},
        )
    assert version_of(engine, target.account_id) == before

    # What decides the list does bump, and the next message follows it.
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE webhook SET events = 'message.rejected' WHERE id = :id"),
            {"id": hook["id"]},
        )
    assert version_of(engine, target.account_id) > before
    assert outbox(engine, capture(daemon, 1, resolve(daemon, bcc))) == []


def test_migration_0014_installs_the_webhook_triggers_and_downgrade_removes_them(
    database_url: str, cli: Cli, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    engine = make_engine(database_url)
    try:
        store = Store(engine)
        setup_account(store)
        hook = webhooks.add_webhook(store, "acme", URL, [])
        account_id = store.account_id("acme")
        config = alembic_config(engine)
        command.downgrade(config, "0013_event_raw_sha256")
        with engine.connect() as connection:
            present = triggers(connection)
        assert not present & WEBHOOK_TRIGGERS
        assert trigger_name("extractor", "insert") in present  # 0008's stay

        command.upgrade(config, "head")  # the migration alone, without migrate()'s repair
        with engine.begin() as connection:
            assert triggers(connection) >= WEBHOOK_TRIGGERS
            assert install_triggers(connection) == []
        before = version_of(engine, account_id)
        with engine.begin() as connection:
            connection.execute(text("UPDATE webhook SET url = 'http://127.0.0.1:9/x'"))
        assert version_of(engine, account_id) == before
        with engine.begin() as connection:
            connection.execute(text("UPDATE webhook SET events = 'contact.created'"))
        changed = version_of(engine, account_id)
        assert changed > before
        webhooks.remove_webhook(store, "acme", str(hook["id"]))
        assert version_of(engine, account_id) > changed

        command.downgrade(config, "0013_event_raw_sha256")
        head = ScriptDirectory.from_config(config).get_current_head()
        assert f"revision {head}" in cli("init")  # upgrade from 0013
        with engine.connect() as connection:
            assert triggers(connection) >= WEBHOOK_TRIGGERS
    finally:
        engine.dispose()

    # A new database, by the migrations alone: 0014 installs what 0008 no longer does.
    if engine.dialect.name == "sqlite":
        fresh_url = f"sqlite:///{tmp_path / 'fresh.db'}"
    else:
        server: PostgresServer = request.getfixturevalue("postgres")
        fresh_url = server.create()
    fresh = make_engine(fresh_url)
    try:
        command.upgrade(alembic_config(fresh), "0013_event_raw_sha256")
        with fresh.connect() as connection:
            assert not triggers(connection) & WEBHOOK_TRIGGERS
        command.upgrade(alembic_config(fresh), "head")
        with fresh.connect() as connection:
            assert triggers(connection) >= WEBHOOK_TRIGGERS
    finally:
        fresh.dispose()
        if engine.dialect.name != "sqlite":
            server.drop(fresh_url)
