"""Engine creation and migrations; the only place that knows which database is behind."""

from __future__ import annotations

import fcntl
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DisconnectionError

MIGRATIONS = Path(__file__).parent / "migrations"


class DatabaseConfigError(ValueError):
    """The database URL cannot be used; the message says why."""


def normalise_url(url: str) -> str:
    """Accept postgres:// and postgresql:// as psycopg 3 URLs, as users write them."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


# A pooled PostgreSQL connection back from use within this long is handed out again without
# a ping; one idle longer is pinged first (a dead one is replaced before anyone uses it).
# Pinging every check-out (pool_pre_ping) cost a round trip and 2.6 % of the daemon's CPU
# per message (bench/, issue 10), for connections used a few milliseconds before. pgbouncer
# does the same (server_check_delay, 30 s). A connection that died meanwhile (the server
# restarted under load) fails its statement: the pool is invalidated and that message
# answered 451, the others get fresh connections.
PING_AFTER_IDLE_SECONDS = 10.0


# How long a statement waits for a lock another transaction holds before it fails: SQLite's
# busy timeout, PostgreSQL's lock_timeout. A capture that fails so answers 451 and the
# client retries; without a bound, a long admin transaction or a DBA's LOCK TABLE on
# PostgreSQL held every capture until the client gave up (Postfix: 10 minutes).
LOCK_TIMEOUT_SECONDS = 30.0
# Each engine's lock timeout, for the writers' turn on its file (writer_turn).
_LOCK_TIMEOUTS: weakref.WeakKeyDictionary[Engine, float] = weakref.WeakKeyDictionary()


def make_engine(
    url: str,
    ping_after_idle: float = PING_AFTER_IDLE_SECONDS,
    lock_timeout: float = LOCK_TIMEOUT_SECONDS,
) -> Engine:
    url = normalise_url(url)
    lock_ms = max(1, round(lock_timeout * 1000))
    try:
        parsed = make_url(url)
    except ArgumentError as error:
        raise DatabaseConfigError(f"database URL {url!r} is not a valid URL") from error
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(
            url, connect_args={"timeout": lock_timeout, "check_same_thread": False}
        )
        event.listen(engine, "connect", _sqlite_pragmas(lock_ms))
        event.listen(engine, "begin", _sqlite_begin)
        _LOCK_TIMEOUTS[engine] = lock_timeout
        return engine
    if parsed.get_backend_name() == "postgresql":
        engine = create_engine(url, pool_size=10, max_overflow=10)
        event.listen(engine, "connect", _postgres_session(lock_ms))
        _ping_when_idle(engine, ping_after_idle)
        return engine
    raise DatabaseConfigError(
        f"database {parsed.get_backend_name()!r} is not supported: use sqlite:///FILE "
        "or postgresql+psycopg://USER@HOST/DB"
    )


def _ping_when_idle(engine: Engine, idle: float) -> None:
    """pool_pre_ping, for connections idle `idle` seconds or more only."""

    @event.listens_for(engine, "checkin")
    def returned(dbapi_connection: Any, record: Any) -> None:
        record.info["returned_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def check(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        returned_at = record.info.get("returned_at")
        if returned_at is None or time.monotonic() - returned_at < idle:
            return  # just connected, or in use a moment ago
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as error:
            if engine.dialect.is_disconnect(error, dbapi_connection, None):
                # The pool discards it and checks out another (SQLAlchemy's documented way).
                raise DisconnectionError(str(error)) from error
            raise


def writing(engine: Engine) -> Engine:
    """The engine to open write transactions with (SQLite takes its write lock up front)."""
    return engine.execution_options(capture_write=True)


class WriterTurnTimeout(TimeoutError):
    """The writers' turn was not free within the lock timeout (the store answers 451)."""


class WriterTurn:
    """Whose turn it is to write a SQLite file, across threads and processes (issue 10).

    SQLite's own wait for its write lock polls, sleeping up to 100 ms between tries: with
    several worker processes, a writer that keeps losing waits seconds. A blocking flock()
    on a file beside the database wakes the next writer the moment the lock is free.
    Each turn opens its own descriptor, so threads of one process exclude each other too.
    Writers that do not take a turn (another program) still meet SQLite's busy timeout.

    The wait is bounded by the lock timeout, as SQLite's is: a process that holds the turn
    and hangs (an admin command stopped mid-transaction) must not hold every capture until
    its client gives up. flock() itself takes no time-out, so a contended turn is waited
    for on a thread of its own; if the time runs out, that thread lets go of the turn the
    moment it gets it.
    """

    def __init__(self, database: str | None, timeout: float = LOCK_TIMEOUT_SECONDS) -> None:
        self.path = f"{database}-writelock" if database else None
        self.timeout = timeout

    @contextmanager
    def held(self) -> Iterator[None]:
        descriptor = self._open()
        if descriptor is None:
            yield
            return
        if not self._taken(descriptor):
            raise WriterTurnTimeout(f"another writer held the database for over {self.timeout:g} s")
        try:
            yield
        finally:
            os.close(descriptor)  # releases the lock

    def _taken(self, descriptor: int) -> bool:
        """True: the turn is held. False: the wait ran out, and the waiter has closed the
        descriptor or will once it gets the turn. Closed on any error."""
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            pass  # another writer's turn: wait for it
        except BaseException:
            os.close(descriptor)
            raise
        try:
            waiter = _TurnWaiter(descriptor)
        except BaseException:  # no thread to wait on
            os.close(descriptor)
            raise
        return waiter.taken_within(self.timeout)

    def _open(self) -> int | None:
        if self.path is None:
            return None
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            return None  # a read-only folder: SQLite's busy timeout alone


class _TurnWaiter:
    """A blocking flock() on a thread, which the caller may stop waiting for. The waiter
    closes the descriptor unless it hands the turn over."""

    def __init__(self, descriptor: int) -> None:
        self.descriptor = descriptor
        self.done = threading.Event()
        self.taken = False
        self.abandoned = False
        self.lock = threading.Lock()
        threading.Thread(target=self._take, name="writer-turn", daemon=True).start()

    def _take(self) -> None:
        try:
            fcntl.flock(self.descriptor, fcntl.LOCK_EX)
            taken = True
        except OSError:
            taken = False
        with self.lock:
            self.taken = taken
            if self.abandoned or not taken:
                os.close(self.descriptor)  # nobody waits for it: let the next writer in
            self.done.set()

    def taken_within(self, timeout: float) -> bool:
        if not self.done.wait(timeout):
            with self.lock:
                if not self.done.is_set():
                    self.abandoned = True
                    return False
        return self.taken


def writer_turn(engine: Engine) -> WriterTurn:
    """The turn to take around write transactions; a no-op for PostgreSQL and memory DBs."""
    return WriterTurn(sqlite_file(engine), _LOCK_TIMEOUTS.get(engine, LOCK_TIMEOUT_SECONDS))


def sqlite_file(engine: Engine) -> str | None:
    """The database file of a SQLite engine; None for PostgreSQL and in-memory databases."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    return database if database and database != ":memory:" else None


# An execution option of engine variants that only read, one statement at a time.
PER_STATEMENT = "capture_per_statement"


def _sqlite_begin(connection: Any) -> None:
    # A deferred SQLite transaction that reads, then writes, fails at once with "database is
    # locked" when another writer committed in between; IMMEDIATE waits its turn instead.
    options = connection.get_execution_options()
    if options.get(PER_STATEMENT, False):
        return  # reads that need no common snapshot: each statement is its own (no BEGIN/COMMIT)
    connection.exec_driver_sql(
        "BEGIN IMMEDIATE" if options.get("capture_write", False) else "BEGIN"
    )


def _postgres_session(lock_ms: int) -> Callable[[Any, Any], None]:
    def connected(connection: Any, _record: Any) -> None:
        # Set once a connection, not as libpq's startup `options` (PgBouncer refuses those).
        connection.execute(f"SET lock_timeout = {int(lock_ms)}")
        connection.commit()  # a SET in a transaction rolled back would be undone

    return connected


def _sqlite_pragmas(busy_ms: int) -> Callable[[Any, Any], None]:
    def connected(connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's own is deferred).
        connection.isolation_level = None
        cursor = connection.cursor()
        # WAL: readers never block the writer; synchronous=FULL: a commit survives power loss.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
        cursor.close()

    return connected


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def migrate(engine: Engine) -> str | None:
    """Create or upgrade the schema to the newest revision; returns that revision."""
    command.upgrade(alembic_config(engine), "head")
    from capture_server.store.cache import VERSION_TABLE, install_triggers
    from capture_server.store.sync_order import install_sync_triggers

    # A SQLite batch migration rebuilds tables without their triggers: put them back.
    with engine.begin() as connection:
        if inspect(connection).has_table(VERSION_TABLE):
            install_triggers(connection)
        install_sync_triggers(connection)
    return current_revision(engine)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def is_up_to_date(engine: Engine) -> bool:
    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    return current_revision(engine) == head
