"""Shared fixtures: databases (SQLite always, PostgreSQL when configured) and a live daemon."""

from __future__ import annotations

import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from capture_server.cli import app
from capture_server.store.db import make_engine, migrate
from capture_server.store.repositories import Store
from tests.authentication.zoneserver import ZoneServer

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parents[1]
# Daemons and CLI processes the tests start run this checkout's code, whichever checkout
# `pip install -e` last pointed the installed package at.
os.environ["PYTHONPATH"] = os.pathsep.join(
    part for part in (str(ROOT), os.environ.get("PYTHONPATH", "")) if part
)
POSTGRES_ENV = "CAPTURE_SERVER_TEST_POSTGRES_URL"
REQUIRE_POSTGRES_ENV = "CAPTURE_SERVER_TEST_REQUIRE_POSTGRES"


def read_data(name: str) -> bytes:
    return (DATA / name).read_bytes()


def free_port() -> int:
    """A loopback port nothing listens on, for a server that must be told its port.

    Drawn below the kernel's ephemeral range: whatever binds port 0 or connects out (other
    tests' servers and clients, under xdist in other processes) never takes it between this
    check and its use. A port-0 one could, and did: a DNS test server took the port a
    Postfix test had chosen for the daemon, and Postfix talked to it."""
    ephemeral = Path("/proc/sys/net/ipv4/ip_local_port_range")
    low = int(ephemeral.read_text().split()[0]) if ephemeral.exists() else 32768
    draw = random.SystemRandom()
    for _ in range(200):
        port = draw.randrange(max(1024, low - 12_000), low)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port below {low}")


@pytest.fixture(scope="session", autouse=True)
def loopback_dns() -> Iterator[ZoneServer]:
    """Every DNS question a test causes (sender checks in report mode) goes to an empty zone
    on loopback: tests never reach a resolver on the network."""
    server = ZoneServer().start()
    names = ("CAPTURE_SERVER_DNS_NAMESERVERS", "CAPTURE_SERVER_DNS_PORT")
    saved = {name: os.environ.get(name) for name in names}
    os.environ["CAPTURE_SERVER_DNS_NAMESERVERS"] = '["127.0.0.1"]'
    os.environ["CAPTURE_SERVER_DNS_PORT"] = str(server.port)
    try:
        yield server
    finally:
        server.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@dataclass
class PostgresServer:
    admin_url: str

    def create(self) -> str:
        import psycopg

        name = f"capture_test_{uuid.uuid4().hex[:12]}"
        url = make_url(self.admin_url)
        with psycopg.connect(libpq_url(self.admin_url), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return url.set(drivername="postgresql+psycopg", database=name).render_as_string(
            hide_password=False
        )

    def drop(self, url: str) -> None:
        import psycopg

        name = make_url(url).database
        with psycopg.connect(libpq_url(self.admin_url), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def libpq_url(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres() -> PostgresServer:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        if os.environ.get(REQUIRE_POSTGRES_ENV):
            pytest.fail(f"{POSTGRES_ENV} is not set but PostgreSQL tests are required")
        pytest.skip(f"PostgreSQL tests need {POSTGRES_ENV}")
    return PostgresServer(url)


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated database of each kind for one test."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'capture.db'}"
        engine = make_engine(url)
        migrate(engine)
        engine.dispose()
        yield url
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    url = server.create()
    engine = make_engine(url)
    migrate(engine)
    engine.dispose()
    try:
        yield url
    finally:
        server.drop(url)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def store(engine: Engine) -> Store:
    return Store(engine)


@dataclass
class Cli:
    database_url: str
    env: dict[str, str]

    def __call__(self, *args: str, expect: int = 0, env_extra: dict[str, str] | None = None) -> str:
        result = CliRunner().invoke(
            app,
            ["--database-url", self.database_url, *args],
            env={**self.env, **(env_extra or {})},
            catch_exceptions=False,
        )
        assert result.exit_code == expect, (result.exit_code, result.output)
        return result.output


@pytest.fixture
def cli(database_url: str, tmp_path: Path) -> Cli:
    env = {"CAPTURE_SERVER_QUARANTINE_DIR": str(tmp_path / "quarantine")}
    return Cli(database_url, env)


@pytest.fixture
def sqlite_cli(tmp_path: Path) -> Cli:
    """The CLI on a fresh SQLite database only, for tests where the store kind does not matter."""
    url = f"sqlite:///{tmp_path / 'only-sqlite.db'}"
    engine = make_engine(url)
    migrate(engine)
    engine.dispose()
    return Cli(url, {"CAPTURE_SERVER_QUARANTINE_DIR": str(tmp_path / "quarantine")})


@dataclass
class Account:
    slug: str
    bcc: str
    forward: str
    reply: str


def make_account(cli: Cli, slug: str = "acme", domain: str = "acme.test") -> Account:
    import json

    created = json.loads(
        cli("account", "add", slug, "--name", "Acme", "--domain", domain, "--json")
    )
    cli("user", "add", slug, f"rita@{domain}", "--name", "Rita Rep")
    cli("user", "add", slug, f"sam@{domain}", "--name", "Sam Colleague")
    return Account(
        slug, created["bcc_address"], created["forward_address"], created["reply_address"]
    )


@dataclass
class RunningDaemon:
    process: subprocess.Popen[bytes]
    ports: dict[str, int]  # listener → port, as the daemon logged it
    log_path: Path

    @property
    def smtp_port(self) -> int:
        return self.ports["smtp"]

    @property
    def lmtp_port(self) -> int:
        return self.ports["lmtp"]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def events(self, name: str) -> list[dict[str, Any]]:
        """The JSON log lines of one event, in order."""
        found = []
        for line in self.log().splitlines():
            if f'"{name}"' in line:
                event = json.loads(line)
                if event.get("event") == name:
                    found.append(event)
        return found

    def stop(self, timeout: float = 20) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        return self.process.wait(timeout=timeout)


def _bound_ports(log: str) -> dict[str, int]:
    ports = {}
    for line in log.splitlines():
        if '"listening"' in line:
            event = json.loads(line)
            ports[event["protocol"]] = int(event["port"])
    return ports


def start_daemon(database_url: str, folder: Path, **settings: str) -> RunningDaemon:
    """Start `capture-server serve` on ports the kernel picks (port 0): no races for ports.

    A setting given as HOST:0 (smtps_listen, metrics_listen) is reported in `ports` too.
    """
    env = {
        **os.environ,
        "CAPTURE_SERVER_DATABASE_URL": database_url,
        "CAPTURE_SERVER_QUARANTINE_DIR": str(folder / "quarantine"),
        "CAPTURE_SERVER_LOG_FORMAT": "json",
        "CAPTURE_SERVER_SERVER_SECRET": "",
        **{f"CAPTURE_SERVER_{key.upper()}": value for key, value in settings.items()},
    }
    expected = {"smtp", "lmtp"} | {
        name.removesuffix("_listen") for name in settings if name.endswith("_listen")
    }
    log_path = folder / f"daemon-{secrets.token_hex(3)}.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "capture_server", "serve",
         "--smtp", "127.0.0.1:0", "--lmtp", "127.0.0.1:0"],
        env=env, stdout=log_path.open("wb"), stderr=subprocess.STDOUT, cwd=folder,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        log = log_path.read_text(errors="replace")
        if process.poll() is not None:
            raise RuntimeError(f"daemon exited {process.returncode}:\n{log}")
        ports = _bound_ports(log)
        if expected <= set(ports):
            return RunningDaemon(process, ports, log_path)
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"daemon did not start:\n{log_path.read_text(errors='replace')}")


@pytest.fixture
def daemon(database_url: str, tmp_path: Path) -> Iterator[RunningDaemon]:
    running = start_daemon(database_url, tmp_path)
    try:
        yield running
    finally:
        if running.process.poll() is None:
            running.process.kill()
            running.process.wait(timeout=10)


def open_transaction(port: int, rcpt: str, timeout: float = 60) -> tuple[socket.socket, BinaryIO]:
    """A raw SMTP session from rita@acme.test up to DATA's 354: the caller sends the data."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    reader = sock.makefile("rb")
    assert reader.readline().startswith(b"220")
    for command in (b"HELO client.test", b"MAIL FROM:<rita@acme.test>",
                    f"RCPT TO:<{rcpt}>".encode(), b"DATA"):  # fmt: skip
        sock.sendall(command + b"\r\n")
        assert reader.readline()[:1] in (b"2", b"3")
    return sock, reader


def sigterm_during_delivery(daemon: RunningDaemon, bcc: str) -> None:
    """SIGTERM arrives halfway through DATA: the listener closes to new clients at once,
    and the transaction in flight still ends in 250 (the drain)."""
    raw = read_data("bcc_simple.eml").replace(b"\n", b"\r\n")
    sock, reader = open_transaction(daemon.smtp_port, bcc)
    with sock:
        sock.sendall(raw[:200])
        daemon.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", daemon.smtp_port), timeout=2).close()
        sock.sendall(raw[200:] + b".\r\n")
        assert reader.readline().startswith(b"250 2.0.0 queued as eng_")
