"""PostgreSQL pool: a connection idle past PING_AFTER_IDLE_SECONDS is pinged at check-out and
replaced when dead; one back from use a moment ago is handed out without a round trip
(store/db.py). The trade-off: a connection that died within that moment fails its statement
and is invalidated, and the next check-out works."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from capture_server.store.db import make_engine
from tests.conftest import PostgresServer, libpq_url


@pytest.fixture
def url(postgres: PostgresServer) -> Iterator[str]:
    created = postgres.create()
    try:
        yield created
    finally:
        postgres.drop(created)


def backend_of(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())


def terminate(url: str, pid: int) -> None:
    """From outside the pool (which would hand out the very connection to kill)."""
    with psycopg.connect(libpq_url(url), autocommit=True) as killer:
        assert killer.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)


def test_an_idle_connection_is_pinged_and_a_dead_one_replaced(url: str) -> None:
    engine = make_engine(url, ping_after_idle=0.3)
    try:
        first = backend_of(engine)
        terminate(url, first)
        time.sleep(0.5)  # idle past the limit: pinged at check-out, found dead, replaced
        assert backend_of(engine) != first
    finally:
        engine.dispose()


def test_a_connection_back_a_moment_ago_is_not_pinged(url: str) -> None:
    engine = make_engine(url, ping_after_idle=60)
    try:
        first = backend_of(engine)
        terminate(url, first)
        with pytest.raises(DBAPIError) as raised:  # no ping: the statement meets the loss
            backend_of(engine)
        assert raised.value.connection_invalidated
        assert backend_of(engine) != first  # the pool let it go
    finally:
        engine.dispose()
