"""The account caches: every write to what they hold bumps the account's version (triggers)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Connection, Engine, text
from sqlmodel import Session

from capture_server.pipeline.message import AccountRules
from capture_server.store import cursor_sql, rules
from capture_server.store.cache import WATCHED, account_version, install_triggers, trigger_name
from capture_server.store.db import migrate
from capture_server.store.repositories import Store
from tests.conftest import read_data

RULES = AccountRules()


def _version(engine: Engine, account_id: int) -> int:
    with Session(engine) as session:
        return account_version(session, account_id)


def test_every_watched_table_has_its_triggers_after_migrate(engine: Engine) -> None:
    with engine.begin() as connection:
        assert install_triggers(connection) == []  # the migration installed all of them
    migrate(engine)  # idempotent
    with engine.begin() as connection:
        connection.exec_driver_sql(
            f"DROP TRIGGER {trigger_name('never_log', 'insert')}"
            + ("" if engine.dialect.name == "sqlite" else " ON never_log")
        )
    migrate(engine)  # as after a SQLite batch migration rebuilt the table: put back
    with engine.begin() as connection:
        assert install_triggers(connection) == []
    assert len(WATCHED) == 9


def test_writes_bump_the_version_and_other_stores_see_them(engine: Engine) -> None:
    daemon, admin = Store(engine), Store(engine)  # two processes' caches, one database
    secret = admin.server_secret()
    bcc = admin.create_account("acme", "Acme", ["acme.test"], "capture.localhost", secret)
    admin.add_user("acme", "rita@acme.test")
    target = daemon.resolve_capture_address(bcc["bcc_address"])
    assert target is not None
    account_id = target.account_id
    first = daemon.snapshot(account_id, (), RULES)
    assert set(first.addresses) == {"rita@acme.test"} and not first.never_log
    assert daemon.snapshot(account_id, (), RULES).users is first.users  # served from the cache

    before = _version(engine, account_id)
    admin.add_user("acme", "sam@acme.test", aliases=["sales@acme.test"])
    assert _version(engine, account_id) > before
    assert set(daemon.snapshot(account_id, (), RULES).addresses) == {
        "rita@acme.test", "sam@acme.test", "sales@acme.test"
    }  # fmt: skip

    rules.add_never_log(admin, "acme", "blocked.test")
    assert daemon.snapshot(account_id, (), RULES).never_log == {"blocked.test"}

    admin.set_account_setting("acme", "max_body_bytes", "10", RULES)
    assert daemon.account_rules(account_id, RULES).max_body_bytes == 10
    assert daemon.snapshot(account_id, (), RULES).rules.max_body_bytes == 10

    admin.tombstone(account_id, "gone@globex.test")
    assert len(daemon.snapshot(account_id, (), RULES).tombstones) == 1

    # Raw SQL (another tool, a future write path) is caught as well.
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO account_domain (account_id, domain) VALUES (:a, 'acme.example')"),
            {"a": account_id},
        )
    assert daemon.snapshot(account_id, (), RULES).domains == {"acme.test", "acme.example"}
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE capture_address SET retired_at = CURRENT_TIMESTAMP WHERE account_id = :a"),
            {"a": account_id},
        )
    assert daemon.resolve_capture_address(bcc["bcc_address"]) is None


def test_a_message_reads_the_account_version_once_at_rcpt(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RCPT reads the version; the rules (evidence) and the snapshot (pipeline) use it."""
    from sqlalchemy import event

    daemon, admin = Store(engine), Store(engine)
    secret = admin.server_secret()
    bcc = admin.create_account("acme", "Acme", ["acme.test"], "capture.localhost", secret)[
        "bcc_address"
    ]
    admin.add_user("acme", "rita@acme.test")
    warm = daemon.resolve_capture_address(bcc)
    assert warm is not None
    daemon.snapshot(warm.account_id, (), RULES, version=warm.account_version)  # caches filled
    statements: list[str] = []

    def seen(_conn: object, _cursor: object, sql: str, *_: object) -> None:
        statements.append(sql)

    # The capture path's statements bypass SQLAlchemy's execute (store/cursor_sql.py): seen
    # here, on their way to the real one.
    fetch = cursor_sql.fetch

    def fetch_seen(connection: Connection, statement: Any, params: Any) -> Any:
        statements.append(str(statement.compile(dialect=connection.dialect)))
        return fetch(connection, statement, params)

    monkeypatch.setattr(cursor_sql, "fetch", fetch_seen)

    event.listen(engine, "before_cursor_execute", seen)  # its autocommit variant too
    try:
        target = daemon.resolve_capture_address(bcc)
        assert target is not None and target.account_version is not None
        version = target.account_version
        assert daemon.cached_rules(target.account_id, version, RULES) is not None  # no I/O
        assert daemon.account_rules(target.account_id, RULES, version) is not None
        daemon.snapshot(target.account_id, ("<a@b.test>",), RULES, version=version)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    version_reads = [sql for sql in statements if "account_version" in sql]
    assert len(version_reads) == 1, statements

    # The snapshot's reads stand alone: no BEGIN and COMMIT around them on SQLite either.
    statements.clear()
    event.listen(engine, "before_cursor_execute", seen)
    try:
        daemon.snapshot(target.account_id, ("<a@b.test>",), RULES, version=version)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert not [sql for sql in statements if sql.upper().startswith("BEGIN")], statements

    # A change after RCPT applies from the next message's RCPT on; this one keeps its view.
    rules.add_never_log(admin, "acme", "blocked.test")
    assert not daemon.snapshot(target.account_id, (), RULES, version=version).never_log
    again = daemon.resolve_capture_address(bcc)
    assert again is not None and again.account_version != version
    snapshot = daemon.snapshot(again.account_id, (), RULES, version=again.account_version)
    assert snapshot.never_log == {"blocked.test"}


def test_a_cached_snapshot_without_a_session_is_the_full_one(store: Store) -> None:
    """With the account cached at RCPT's version (BCC, forward), the snapshot reads the
    threads alone, outside a session: it must be what the full read gives."""
    from tests.store.test_store import capture, setup_account

    bcc = setup_account(store)
    capture(store, read_data("bcc_simple.eml"), bcc)
    target = store.resolve_capture_address(bcc)
    assert target is not None and target.account_version is not None
    ids = ("<proposal-q3-1@mail.acme.test>", "<unknown@x.test>")
    full = store.snapshot(target.account_id, ids, RULES)  # reads the version in its session
    cached = store.snapshot(target.account_id, ids, RULES, version=target.account_version)
    assert cached == full
    assert list(cached.known_threads) == ["<proposal-q3-1@mail.acme.test>"]
    assert store.snapshot(target.account_id, (), RULES, version=target.account_version) == (
        store.snapshot(target.account_id, (), RULES)
    )
