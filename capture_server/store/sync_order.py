"""SQLite's numbering of rows in the order they become visible (sync_seq; migration 0012).

Writers take turns on SQLite, so a counter bumped by an AFTER INSERT trigger is the order of
the commits (PostgreSQL uses the writing transaction's id instead: a column default). A batch
migration that rebuilds one of these tables drops its trigger with it, and its new rows would
never be listed by the read API: `install_sync_triggers` runs after every upgrade to put back
whatever is missing (as cache.install_triggers does for the version triggers).
"""

from __future__ import annotations

from sqlalchemy.engine import Connection

# table → the column it was ordered by before sync_seq (a tie-break within one transaction)
SYNC_TABLES = {"engagement": "created_at", "contact": "created_at", "capture_event": "received_at"}
COUNTER = "sync_sequence"


def sync_trigger_name(table: str) -> str:
    return f"capture_sync_seq_{table}"


def _sqlite_trigger(table: str) -> str:
    number = f"(SELECT value FROM {COUNTER} WHERE id = 1)"  # noqa: S608 (constants only)
    bump = f"UPDATE {COUNTER} SET value = value + 1 WHERE id = 1"  # noqa: S608
    number_row = f"UPDATE {table} SET sync_seq = {number} WHERE id = NEW.id"  # noqa: S608
    # AFTER INSERT: SQLite cannot change NEW in a BEFORE trigger.
    return (
        f"CREATE TRIGGER {sync_trigger_name(table)} AFTER INSERT ON {table} FOR EACH ROW "
        f"WHEN NEW.sync_seq IS NULL BEGIN {bump}; {number_row}; END"
    )


def install_sync_triggers(connection: Connection) -> list[str]:
    """Create whichever numbering triggers are missing (SQLite with the counter table only);
    returns their names."""
    if connection.dialect.name != "sqlite":
        return []
    present = set(
        connection.exec_driver_sql(
            "SELECT name FROM sqlite_master WHERE type IN ('trigger', 'table')"
        ).scalars()
    )
    if COUNTER not in present:
        return []  # not migrated to 0012 yet
    missing = [table for table in SYNC_TABLES if sync_trigger_name(table) not in present]
    for table in missing:
        connection.exec_driver_sql(_sqlite_trigger(table))
    return [sync_trigger_name(table) for table in missing]
