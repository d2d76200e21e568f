"""Several daemon processes on one PostgreSQL database, each given every message at once.

The deployment issue 10 asks about: nodes behind a load balancer, an MTA retrying on another
node, two capture addresses routed to two nodes. Each contact, company and engagement must
still be created exactly once. (tests/store has the thread-level version of this.)
"""

from __future__ import annotations

import json
import smtplib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import text

from capture_server.store.db import make_engine
from tests.conftest import (
    Cli,
    PostgresServer,
    RunningDaemon,
    make_account,
    read_data,
    start_daemon,
)

NODES = 3
MESSAGES = 12


def _message(number: int) -> bytes:
    """Overlapping people and companies, so the nodes race to create the same rows."""
    raw = read_data("bcc_simple.eml")
    raw = raw.replace(b"<proposal-q3-1@mail.acme.test>", f"<multi-{number}@acme.test>".encode())
    to = f'"Person {number % 5}" <person{number % 5}@company{number % 3}.test>'
    return raw.replace(b'"Carl Customer" <carl@globex.test>', to.encode())


def _send(daemon: RunningDaemon, raw: bytes, rcpt: str) -> int:
    with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=60) as client:
        client.ehlo("client.test")
        client.mail("rita@acme.test")
        client.rcpt(rcpt)
        code, _ = client.data(raw)
        return code


@pytest.mark.parametrize("backend", ["postgres"])
def test_many_nodes_create_each_row_once(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    server: PostgresServer = request.getfixturevalue(backend)  # fails when required and absent
    url = server.create()
    daemons: list[RunningDaemon] = []
    try:
        cli = Cli(url, {"CAPTURE_SERVER_QUARANTINE_DIR": str(tmp_path / "quarantine")})
        cli("init")
        account = make_account(cli)
        for node in range(NODES):
            folder = tmp_path / f"node{node}"
            folder.mkdir()
            daemons.append(start_daemon(url, folder))
        jobs = [(d, _message(n)) for n in range(MESSAGES) for d in daemons]
        with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
            codes = list(pool.map(lambda job: _send(job[0], job[1], account.bcc), jobs))
        assert codes == [250] * len(jobs)

        engagements = [json.loads(line) for line in cli("engagements", "list", "acme", "--json")
                       .splitlines()]  # fmt: skip
        assert sorted(e["message_id"] for e in engagements) == sorted(
            f"<multi-{n}@acme.test>" for n in range(MESSAGES)
        )
        engine = make_engine(url)
        try:
            with engine.connect() as connection:
                contacts = Counter(
                    connection.execute(text("SELECT primary_address FROM contact")).scalars()
                )
                companies = Counter(
                    connection.execute(text("SELECT domain FROM company")).scalars()
                )
                events = connection.execute(text("SELECT count(*) FROM capture_event")).scalar()
        finally:
            engine.dispose()
        expected = {f"person{n % 5}@company{n % 3}.test" for n in range(MESSAGES)}
        expected |= {"dana@globex.test", "frank.free@gmail.com"}
        assert set(contacts) == expected and set(contacts.values()) == {1}
        assert set(companies) == {"company0.test", "company1.test", "company2.test",
                                  "globex.test"}  # fmt: skip
        assert set(companies.values()) == {1}
        assert events == len(jobs)  # every delivery is recorded, duplicates as such
    finally:
        for daemon in daemons:
            daemon.stop()
        server.drop(url)
