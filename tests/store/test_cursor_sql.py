"""store/cursor_sql.py runs the capture path's statements on the driver's cursor: rows it
writes read back through the ORM exactly as SQLAlchemy's own execute would have written them,
IN lists of any length bind, and driver errors come out as SQLAlchemy's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine, insert, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlmodel import Session

from capture_server.store import cursor_sql
from capture_server.store.capture_sql import statements
from capture_server.store.models import Contact
from capture_server.store.repositories import Store
from tests.store.test_store import setup_account


def _account(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT id FROM account")).scalar_one())


def _contacts(engine: Engine) -> dict[str, tuple[object, ...]]:
    with Session(engine) as session:
        rows = session.execute(select(Contact)).scalars()
        return {
            row.primary_address: (row.name, row.created_by, row.field_sources, row.created_at)
            for row in rows
        }


def test_rows_written_on_the_cursor_read_back_as_sqlalchemys(engine: Engine, store: Store
                                                            ) -> None:  # fmt: skip
    setup_account(store)
    account_id = _account(engine)
    sql = statements(engine.dialect.name)
    moment = datetime(2026, 12, 3, 9, 30, 0, 0, tzinfo=timezone(timedelta(hours=2)))
    with engine.begin() as connection:
        # The same rows, one through SQLAlchemy's execute, one straight on the cursor; the
        # columns not given are the model's defaults (created_by, field_sources).
        connection.execute(insert(Contact).values(
            account_id=account_id, primary_address="orm@globex.test", name="Ö", created_at=moment
        ))  # fmt: skip
        cursor_sql.insert_many(connection, sql.insert_contact, [
            {"account_id": account_id, "primary_address": "cursor@globex.test", "name": "Ö",
             "created_at": moment},
        ])  # fmt: skip
    got = _contacts(engine)
    assert got["cursor@globex.test"] == got["orm@globex.test"]
    assert got["cursor@globex.test"] == ("Ö", "capture", "{}", moment.astimezone(UTC))
    with engine.connect() as connection:  # stored alike, byte for byte (SQLite: text)
        stored = connection.execute(
            text("SELECT primary_address, created_at FROM contact ORDER BY primary_address")
        ).all()
    assert stored[0][1] == stored[1][1]


@pytest.mark.parametrize("length", [1, 2, 7, 64])
def test_in_lists_of_any_length(engine: Engine, store: Store, length: int) -> None:
    setup_account(store)
    account_id = _account(engine)
    sql = statements(engine.dialect.name)
    addresses = [f"c{number}@globex.test" for number in range(length)]
    with engine.begin() as connection:
        cursor_sql.insert_many(connection, sql.insert_contact, [
            {"account_id": account_id, "primary_address": address, "name": None}
            for address in addresses
        ])  # fmt: skip
        wanted = [*addresses[::2], "nobody@globex.test"]
        rows = cursor_sql.fetch(
            connection, sql.contacts_by_primary, {"account_id": account_id, "addresses": wanted}
        )
        assert sorted(address for _, address in rows) == sorted(addresses[::2])
        with pytest.raises(ValueError, match="empty IN list"):
            cursor_sql.fetch(
                connection, sql.contacts_by_primary, {"account_id": account_id, "addresses": []}
            )


def test_driver_errors_are_sqlalchemys(engine: Engine, store: Store) -> None:
    setup_account(store)
    account_id = _account(engine)
    sql = statements(engine.dialect.name)
    row = {"id": "evt_same", "account_id": account_id, "received_at": datetime.now(UTC),
           "protocol": "smtp", "mail_from": "a@b.test", "rcpt": "c@d.test", "kind": "bcc",
           "decision": "ignore", "reason": "duplicate", "smtp_reply": "250"}  # fmt: skip
    with engine.begin() as connection:
        cursor_sql.fetch(connection, sql.insert_event, row)
    with pytest.raises(IntegrityError), engine.begin() as connection:
        cursor_sql.fetch(connection, sql.insert_event, row)  # the same id again


def test_a_lost_connection_is_invalidated(engine: Engine, store: Store) -> None:
    """PostgreSQL: a server that dropped the session gives a DBAPIError that says so, and the
    pool does not hand the dead connection out again."""
    if engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL only: an SQLite connection cannot be lost")
    setup_account(store)
    account_id = _account(engine)
    sql = statements(engine.dialect.name)
    with engine.connect() as connection:
        pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with engine.connect() as killer:
            killer.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        with pytest.raises(DBAPIError) as raised:
            cursor_sql.fetch(connection, sql.webhooks_of_account, {"account_id": account_id})
        assert raised.value.connection_invalidated
        assert connection.invalidated
    with engine.connect() as connection:  # a fresh one, which works
        assert (
            cursor_sql.fetch(connection, sql.webhooks_of_account, {"account_id": account_id}) == []
        )
