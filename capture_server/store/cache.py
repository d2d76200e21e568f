"""Per-account versions, bumped by database triggers, and the caches they keep honest.

What the rules read of an account (users and their addresses, domains, never-log rules,
tombstones, settings, extractors) and its capture addresses change rarely but were read for
every message. They are cached per Store and checked against `account_version`, one row per
account that a trigger bumps in the same transaction as any write to those tables.

Triggers rather than a bump in each write path: admin writes live in several modules (and
more come), other processes (the CLI, other daemons on the same database) write too, and a
trigger cannot be forgotten by the next write path someone adds. No foreign key on
`account_version`: a deleted account's row stays, so a re-used id never meets an old version.

A table whose rows also change for what no cache holds (a webhook's URL and secret are read
at delivery, not cached) names in UPDATE_OF the columns whose update bumps: its update
trigger is `AFTER UPDATE OF` those, so other updates leave the account's caches alone.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, column, table, text
from sqlmodel import Session

VERSION_TABLE = "account_version"
# Every table a cached value is read from, and the column that names the account.
WATCHED: dict[str, str] = {
    "account": "id",
    "account_domain": "account_id",
    "capture_address": "account_id",
    "app_user": "account_id",
    "user_address": "account_id",
    "never_log": "account_id",
    "tombstone": "account_id",
    "extractor": "account_id",
    "webhook": "account_id",  # the list of (id, events) the outbox is written for
}
# Tables whose update bumps only when one of these columns is set (the account column among
# them: a row moving between accounts changes both). Others: any update bumps.
UPDATE_OF: dict[str, tuple[str, ...]] = {
    "webhook": ("account_id", "events"),
}
_OPERATIONS = ("insert", "update", "delete")
_PG_FUNCTION = "capture_bump_account_version"


def trigger_name(table: str, operation: str) -> str:
    return f"capture_version_{table}_{operation}"


def _event(table: str, operation: str) -> str:
    """The trigger's event: `UPDATE OF a, b` for a table with UPDATE_OF (same on both)."""
    columns = UPDATE_OF.get(table, ()) if operation == "update" else ()
    return operation.upper() + (f" OF {', '.join(columns)}" if columns else "")


def _sqlite_trigger(table: str, column: str, operation: str) -> str:
    rows = {"insert": ("NEW",), "update": ("OLD", "NEW"), "delete": ("OLD",)}[operation]
    bumps = " ".join(
        f"INSERT INTO {VERSION_TABLE} (account_id, version) VALUES ({row}.{column}, 1) "  # noqa: S608
        f"ON CONFLICT (account_id) DO UPDATE SET version = version + 1;"
        for row in rows
    )
    return (
        f"CREATE TRIGGER IF NOT EXISTS {trigger_name(table, operation)} "
        f"AFTER {_event(table, operation)} ON {table} FOR EACH ROW BEGIN {bumps} END"
    )


_PG_FUNCTION_SQL = f"""
CREATE OR REPLACE FUNCTION {_PG_FUNCTION}() RETURNS trigger AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        INSERT INTO {VERSION_TABLE} (account_id, version)
        VALUES ((to_jsonb(OLD) ->> TG_ARGV[0])::integer, 1)
        ON CONFLICT (account_id) DO UPDATE SET version = {VERSION_TABLE}.version + 1;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO {VERSION_TABLE} (account_id, version)
        VALUES ((to_jsonb(NEW) ->> TG_ARGV[0])::integer, 1)
        ON CONFLICT (account_id) DO UPDATE SET version = {VERSION_TABLE}.version + 1;
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql
"""  # noqa: S608 (constants only)


def install_triggers(connection: Connection, tables: Iterable[str] | None = None) -> list[str]:
    """Create whichever version triggers are missing; returns their names.

    Run by the migrations (each for the tables it watches: `tables`) and, for all, after
    every upgrade: SQLite drops a table's triggers when a batch migration rebuilds it, so a
    later migration must not silently stop the bumps. Present means present by name: a
    change to a table's UPDATE_OF needs a migration that drops its update trigger first.
    """
    dialect = connection.dialect.name
    chosen = WATCHED if tables is None else {t: WATCHED[t] for t in tables}
    wanted = [(t, c, op) for t, c in chosen.items() for op in _OPERATIONS]
    if dialect == "sqlite":
        present = set(
            connection.exec_driver_sql(
                "SELECT name FROM sqlite_master WHERE type = 'trigger'"
            ).scalars()
        )
    else:
        present = set(
            connection.exec_driver_sql(
                "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"
            ).scalars()
        )
    missing = [(t, c, op) for t, c, op in wanted if trigger_name(t, op) not in present]
    if missing and dialect != "sqlite":
        connection.exec_driver_sql(_PG_FUNCTION_SQL)
    for name, account_column, operation in missing:
        if dialect == "sqlite":
            connection.exec_driver_sql(_sqlite_trigger(name, account_column, operation))
        else:
            connection.exec_driver_sql(
                f"CREATE TRIGGER {trigger_name(name, operation)} AFTER "
                f"{_event(name, operation)} ON {name} FOR EACH ROW "
                f"EXECUTE FUNCTION {_PG_FUNCTION}('{account_column}')"
            )
    return [trigger_name(t, op) for t, _, op in missing]


def drop_triggers(connection: Connection, tables: Iterable[str] | None = None) -> None:
    """Drop the version triggers of `tables` (all: with PostgreSQL's function too)."""
    for name in WATCHED if tables is None else tables:
        for operation in _OPERATIONS:
            drop = f"DROP TRIGGER IF EXISTS {trigger_name(name, operation)}"
            sqlite = connection.dialect.name == "sqlite"
            connection.exec_driver_sql(drop if sqlite else f"{drop} ON {name}")
    if tables is None and connection.dialect.name != "sqlite":
        connection.exec_driver_sql(f"DROP FUNCTION IF EXISTS {_PG_FUNCTION}()")


VERSION_QUERY = text(f"SELECT version FROM {VERSION_TABLE} WHERE account_id = :account_id")  # noqa: S608


def account_version(session: Session, account_id: int) -> int:
    """The account's current version (0 before its first bump): one primary-key read."""
    found = session.execute(VERSION_QUERY, {"account_id": account_id}).scalar()
    return int(found) if found is not None else 0


T = TypeVar("T")


@dataclass(frozen=True)
class _Entry(Generic[T]):
    version: int
    value: T


class VersionedCache(Generic[T]):
    """Values keyed by anything, each valid only at the account version it was read at.

    Read the version *before* the value: a write that commits in between then leaves a
    newer value under an older version, which the next check replaces; never the reverse.
    """

    def __init__(self, limit: int = 10_000) -> None:
        self._entries: dict[Any, _Entry[T]] = {}
        self._limit = limit
        self._lock = threading.Lock()

    def get(self, key: Any, version: int) -> T | None:
        entry = self._entries.get(key)
        return entry.value if entry is not None and entry.version == version else None

    def peek(self, key: Any) -> T | None:
        """The value at whatever version it was read (check that version before trusting it)."""
        entry = self._entries.get(key)
        return entry.value if entry is not None else None

    def put(self, key: Any, version: int, value: T) -> None:
        with self._lock:
            if len(self._entries) >= self._limit and key not in self._entries:
                self._entries.clear()  # a crude bound: accounts and addresses are few
            self._entries[key] = _Entry(version, value)


# For joins (resolve_capture_address reads an address and its version in one statement).
VERSIONS = table(VERSION_TABLE, column("account_id"), column("version"))
