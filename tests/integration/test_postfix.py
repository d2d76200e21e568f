"""A real Postfix in front of the daemon: SMTP in, LMTP out to capture-server, retries on 4xx.

Opt-in: runs when CAPTURE_SERVER_TEST_POSTFIX=1 (.ci/run sets it after
tools/install-test-postfix.sh). Each test runs a private Postfix instance from its own
config directory under the test's tmp folder, listening on a random loopback port, whose
only route is LMTP to the daemon; every other destination is an `error:` transport, so no
mail can leave the machine. Postfix needs root to start.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from capture_server.store.db import make_engine, migrate
from tests.conftest import (
    Cli,
    PostgresServer,
    RunningDaemon,
    free_port,
    libpq_url,
    make_account,
    read_data,
)

ENV = "CAPTURE_SERVER_TEST_POSTFIX"
# Postfix's commands live in /usr/sbin, which a non-login PATH may lack.
SBIN_PATH = os.pathsep.join([os.environ.get("PATH", os.defpath), "/usr/sbin", "/sbin"])
POSTFIX = shutil.which("postfix", path=SBIN_PATH)
POSTQUEUE = shutil.which("postqueue", path=SBIN_PATH) or "postqueue"
SWAKS = shutil.which("swaks", path=SBIN_PATH)
CAPTURE_DOMAIN = "capture.localhost"  # the daemon's default capture_domain

pytestmark = [
    pytest.mark.skipif(
        os.environ.get(ENV) != "1",
        reason=f"Postfix integration tests are opt-in: set {ENV}=1 "
        "(tools/install-test-postfix.sh installs Postfix and swaks)",
    ),
    pytest.mark.skipif(
        POSTFIX is None or SWAKS is None,
        reason="postfix or swaks is not installed: run tools/install-test-postfix.sh",
    ),
    pytest.mark.skipif(
        hasattr(os, "geteuid") and os.geteuid() != 0, reason="starting Postfix needs root"
    ),
]

MAIN_CF = """\
# A private Postfix instance for one test: loopback only, relays the capture domain over
# LMTP to the daemon and nothing else.
compatibility_level = 3.6
config_directory = {config}
queue_directory = {queue}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
myhostname = mta.capture-test.invalid
mydomain = capture-test.invalid
myorigin = $myhostname
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
mydestination =
local_recipient_maps =
relay_domains = {domain}
relay_recipient_maps =
transport_maps = texthash:{config}/transport
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions =
# Nothing may ever leave the machine: every other route is an error.
default_transport = error:no mail leaves the capture-server test machine
relay_transport = error:no mail leaves the capture-server test machine
local_transport = error:no local delivery in the capture-server test
virtual_transport = error:no virtual delivery in the capture-server test
disable_dns_lookups = yes
smtp_host_lookup = native
lmtp_host_lookup = native
# Retries only when the test flushes the queue (postqueue -f), never on a timer mid-test.
queue_run_delay = 300s
minimal_backoff_time = 300s
maximal_backoff_time = 600s
maillog_file = {log}
maillog_file_prefixes = {tmp}
biff = no
smtputf8_enable = yes
"""

MASTER_CF = """\
# service type  private unpriv  chroot  wakeup  maxproc command
127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def wait_for(
    what: str, check: Callable[[], bool], timeout: float, detail: Callable[[], str]
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{detail()}")


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@dataclass
class Postfix:
    """One private Postfix instance, driven with its own -c config directory."""

    root: Path
    lmtp_port: int
    smtp_port: int = field(default_factory=free_port)

    @property
    def config_dir(self) -> Path:
        return self.root / "etc"

    @property
    def log_path(self) -> Path:
        return self.root / "postfix.log"

    def write_config(self) -> None:
        self.config_dir.mkdir(parents=True)
        (self.root / "data").mkdir()
        (self.root / "queue").mkdir()
        shutil.chown(self.root / "data", "postfix")
        self.log_path.touch()
        (self.config_dir / "main.cf").write_text(
            MAIN_CF.format(
                config=self.config_dir,
                queue=self.root / "queue",
                data=self.root / "data",
                domain=CAPTURE_DOMAIN,
                log=self.log_path,
                tmp=self.root,
            )
        )
        (self.config_dir / "master.cf").write_text(MASTER_CF.format(port=self.smtp_port))
        self.route_to(self.lmtp_port)

    def route_to(self, lmtp_port: int) -> None:
        self.lmtp_port = lmtp_port
        (self.config_dir / "transport").write_text(
            f"{CAPTURE_DOMAIN} lmtp:inet:127.0.0.1:{lmtp_port}\n"
        )

    def run(self, *args: str, timeout: float = 60) -> str:
        result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
        assert result.returncode == 0, (
            f"{' '.join(args)} exited {result.returncode}:\n{result.stdout}{result.stderr}\n"
            f"--- postfix log ---\n{self.log()}"
        )
        return result.stdout + result.stderr

    def postfix(self, *args: str) -> str:
        return self.run(str(POSTFIX), "-c", str(self.config_dir), *args)

    def running(self) -> bool:
        status = subprocess.run(
            [str(POSTFIX), "-c", str(self.config_dir), "status"],
            capture_output=True, timeout=30, check=False,
        )  # fmt: skip
        return status.returncode == 0

    def start(self) -> None:
        self.write_config()
        self.postfix("check")  # creates the queue directories with their owners and modes
        self.postfix("start")
        wait_for("Postfix's smtpd", lambda: listening(self.smtp_port), 30, self.log)

    def processes(self) -> set[int]:
        """This instance's master and children: they carry MAIL_CONFIG=<our config dir>."""
        marker = f"MAIL_CONFIG={self.config_dir}".encode()
        found = set()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    found.add(int(entry.name))
            except OSError:
                continue
        return found

    def stop(self) -> None:
        """postfix stop, then wait (bounded) until every process of the instance is gone."""
        pids = self.processes()
        if self.running():
            subprocess.run(
                [str(POSTFIX), "-c", str(self.config_dir), "stop"],
                capture_output=True, timeout=30, check=False,
            )  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            pids = {pid for pid in pids | self.processes() if Path(f"/proc/{pid}").exists()}
            if not pids:
                return
            time.sleep(0.2)
        for pid in self.processes():  # last resort, by pid: only this instance's processes
            os.kill(pid, signal.SIGKILL)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no postfix log)"

    def send(self, raw: bytes, mail_from: str, rcpt: str) -> str:
        message = self.root / f"message-{time.monotonic_ns()}.eml"
        message.write_bytes(raw)
        return self.run(
            str(SWAKS), "--server", f"127.0.0.1:{self.smtp_port}", "--helo", "client.test",
            "--from", mail_from, "--to", rcpt, "--data", f"@{message}", "--timeout", "30",
        )  # fmt: skip

    def queue(self) -> str:
        return self.run(POSTQUEUE, "-c", str(self.config_dir), "-p")

    def flush(self) -> None:
        self.run(POSTQUEUE, "-c", str(self.config_dir), "-f")

    def wait_for_log(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        found: list[re.Match[str]] = []

        def check() -> bool:
            match = re.search(pattern, self.log())
            if match:
                found.append(match)
            return match is not None

        wait_for(f"/{pattern}/ in the Postfix log", check, timeout, self.log)
        return found[0]


@pytest.fixture
def postfix(tmp_path: Path) -> Iterator[Callable[[int], Postfix]]:
    """Start private Postfix instances relaying to a given LMTP port; all stopped after."""
    started: list[Postfix] = []

    def start(lmtp_port: int) -> Postfix:
        # Postfix opens its data directory as the unprivileged `postfix` user, which cannot
        # pass pytest's 0700 base folder: the instance lives in a folder of its own in /tmp,
        # its log is copied into the test's tmp folder, and the folder is removed after.
        root = Path(tempfile.mkdtemp(prefix="capture-postfix-"))
        root.chmod(0o755)
        instance = Postfix(root, lmtp_port)
        started.append(instance)
        instance.start()
        return instance

    try:
        yield start
    finally:
        for number, instance in enumerate(started):
            instance.stop()
            if instance.log_path.exists():
                shutil.copy(instance.log_path, tmp_path / f"postfix{number}.log")
        for instance in started:
            assert not instance.running(), f"Postfix still running:\n{instance.log()}"
            assert not instance.processes(), f"Postfix processes left:\n{instance.log()}"
            shutil.rmtree(instance.root)


def start_daemon_on(database_url: str, folder: Path, lmtp_port: int) -> RunningDaemon:
    """The daemon with its LMTP listener on a port chosen beforehand (SMTP off)."""
    env = {
        **os.environ,
        "CAPTURE_SERVER_DATABASE_URL": database_url,
        "CAPTURE_SERVER_QUARANTINE_DIR": str(folder / "quarantine"),
        "CAPTURE_SERVER_LOG_FORMAT": "json",
    }
    log_path = folder / f"daemon-{lmtp_port}.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "capture_server", "serve", "--smtp", "",
         "--lmtp", f"127.0.0.1:{lmtp_port}"],
        env=env, stdout=log_path.open("wb"), stderr=subprocess.STDOUT, cwd=folder,
    )  # fmt: skip
    daemon = RunningDaemon(process, {"lmtp": lmtp_port}, log_path)

    def up() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"daemon exited {process.returncode}:\n{daemon.log()}")
        # Its own "listening" line too: something else on the port would not do.
        return '"listening"' in daemon.log() and listening(lmtp_port)

    try:
        wait_for("the daemon's LMTP listener", up, 30, daemon.log)
    except AssertionError:
        daemon.stop()
        raise
    return daemon


@pytest.fixture
def daemons() -> Iterator[list[RunningDaemon]]:
    running: list[RunningDaemon] = []
    yield running
    for daemon in running:
        if daemon.process.poll() is None:
            daemon.stop()


def engagements(cli: Cli, slug: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in cli("engagements", "list", slug, "--json").splitlines()]


def test_postfix_delivers_over_lmtp_to_the_daemon(
    database_url: str,
    tmp_path: Path,
    cli: Cli,
    postfix: Callable[[int], Postfix],
    daemons: list[RunningDaemon],
) -> None:
    account = make_account(cli)
    daemon = start_daemon_on(database_url, tmp_path, free_port())
    daemons.append(daemon)
    mta = postfix(daemon.lmtp_port)

    dialogue = mta.send(read_data("bcc_simple.eml"), "rita@acme.test", account.bcc)
    assert "250 2.0.0 Ok: queued as" in dialogue, dialogue

    delivered = mta.wait_for_log(r"relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+.*status=sent \((.*)\)")
    assert "queued as eng_" in delivered.group(1), mta.log()
    [engagement] = engagements(cli, account.slug)
    assert str(engagement["id"]) in delivered.group(1)
    assert engagement["kind"] == "bcc"
    assert engagement["owner"] == "rita@acme.test"
    assert engagement["subject"] == "Proposal for the Q3 rollout"
    assert engagement["message_id"] == "<proposal-q3-1@mail.acme.test>"
    assert "carl@globex.test" in engagement["contacts"]  # type: ignore[operator]
    assert "Mail queue is empty" in mta.queue()


def test_postfix_refuses_what_the_daemon_refuses(
    database_url: str,
    tmp_path: Path,
    cli: Cli,
    postfix: Callable[[int], Postfix],
    daemons: list[RunningDaemon],
) -> None:
    """A 5xx from the daemon over LMTP is final: Postfix bounces (to nowhere) and moves on."""
    account = make_account(cli)
    daemon = start_daemon_on(database_url, tmp_path, free_port())
    daemons.append(daemon)
    mta = postfix(daemon.lmtp_port)

    mta.send(read_data("bcc_unknown_sender.eml"), "mallory@evil.test", account.bcc)
    bounced = mta.wait_for_log(r"status=bounced \((.*)\)")
    assert "5.7.1" in bounced.group(1), mta.log()
    assert "status=deferred" not in mta.log()
    assert engagements(cli, account.slug) == []


def test_postfix_defers_while_the_daemon_is_down_then_delivers_once(
    database_url: str,
    tmp_path: Path,
    cli: Cli,
    postfix: Callable[[int], Postfix],
    daemons: list[RunningDaemon],
) -> None:
    account = make_account(cli)
    lmtp_port = free_port()  # nothing listens there yet
    mta = postfix(lmtp_port)

    mta.send(read_data("bcc_simple.eml"), "rita@acme.test", account.bcc)
    deferred = mta.wait_for_log(r"status=deferred \((.*)\)")
    assert "Connection refused" in deferred.group(1), mta.log()
    assert account.bcc in mta.queue()
    assert engagements(cli, account.slug) == []

    daemons.append(start_daemon_on(database_url, tmp_path, lmtp_port))
    mta.flush()
    mta.wait_for_log(r"status=sent \(.*queued as eng_")
    wait_for("an empty queue", lambda: "Mail queue is empty" in mta.queue(), 30, mta.log)
    [engagement] = engagements(cli, account.slug)
    assert engagement["message_id"] == "<proposal-q3-1@mail.acme.test>"

    # A second copy of the same email (the rep's retry) is acknowledged, not logged twice.
    mta.send(read_data("bcc_simple.eml"), "rita@acme.test", account.bcc)
    mta.wait_for_log(r"status=sent \(.*Already logged as eng_")
    assert [e["id"] for e in engagements(cli, account.slug)] == [engagement["id"]]


def test_postfix_retries_after_451_from_the_daemon_postgres(
    postgres: PostgresServer,
    tmp_path: Path,
    postfix: Callable[[int], Postfix],
    daemons: list[RunningDaemon],
) -> None:
    """The database goes away: the daemon answers 451, Postfix keeps the mail and retries."""
    url = postgres.create()
    engine = make_engine(url)
    migrate(engine)
    engine.dispose()
    name = make_url(url).database
    try:
        cli = Cli(url, {"CAPTURE_SERVER_QUARANTINE_DIR": str(tmp_path / "quarantine")})
        account = make_account(cli)
        daemon = start_daemon_on(url, tmp_path, free_port())
        daemons.append(daemon)
        mta = postfix(daemon.lmtp_port)

        with psycopg.connect(libpq_url(postgres.admin_url), autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )
            mta.send(read_data("bcc_simple.eml"), "rita@acme.test", account.bcc)
            deferred = mta.wait_for_log(r"status=deferred \((.*)\)")
            assert "451 4.3.0" in deferred.group(1), mta.log()
            assert account.bcc in mta.queue()
            admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')

        mta.flush()
        mta.wait_for_log(r"status=sent \(.*queued as eng_")
        wait_for("an empty queue", lambda: "Mail queue is empty" in mta.queue(), 30, mta.log)
        [engagement] = engagements(cli, account.slug)
        assert engagement["message_id"] == "<proposal-q3-1@mail.acme.test>"
        assert daemon.process.poll() is None, daemon.log()  # the daemon rode it out
    finally:
        postgres.drop(url)
