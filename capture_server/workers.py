"""Several daemon processes on the same listeners, under one supervisor (setting `workers`).

As Postfix's master(8) does for smtpd: the supervisor binds every SMTP/LMTP/SMTPS listener
once, then starts N workers (`python -m capture_server.workers`, a fresh interpreter each)
that inherit the listening sockets. Each worker is a whole daemon: its own event loop,
Store and engine, group-commit writer, DNS and account caches.

Sockets: for each listener address the supervisor binds N sockets with SO_REUSEPORT on the
same port (port 0: the port the first one got), one per worker slot. The kernel spreads new
connections over them by a hash of the client's address and port (what nginx's `reuseport`
does), so no worker accepts everything while the others idle, and no accept lock is needed.
The supervisor keeps its copy of every socket: when a worker dies, connections waiting in
its socket's queue are not refused; its replacement takes them over.

Limits: since that hash does not spread evenly (one client's sessions may land 3 and 1 on
two workers), max_connections and max_connections_per_ip are counted across the workers in
a shared-memory region the supervisor creates and passes like the sockets
(smtp/shared_counts.py); each worker counts in its own column, zeroed when it dies (by the
supervisor when it reaps it, and by its replacement at start). message_memory_bytes is
memory of each process: each worker has 1/N of it.

What exists once: the /metrics and /healthz listener (the supervisor, aggregating the
workers' metrics with prometheus_client's multiprocess mode), the read API (the supervisor:
stateless reads from the database) and the webhook sender (worker 0; claiming outbox rows is
a conditional UPDATE, safe across processes and nodes, but one poller keeps N of them from
taking SQLite's write lock every second).

Signals: SIGTERM/SIGINT are forwarded to every worker, each drains as a single daemon does;
stragglers are killed after drain_seconds (+ a margin). SIGHUP is forwarded: each worker
reloads its settings. A worker that exits unexpectedly is restarted with a backoff; if one
keeps dying right after its start, the supervisor stops everything and exits 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.samples import Sample

from capture_server import metrics
from capture_server.config import ConfigError, Settings, load_settings, parse_listen
from capture_server.logging import bind_process, configure_logging, get_logger
from capture_server.smtp.shared_counts import SharedCounts, slots_for

if TYPE_CHECKING:
    from capture_server.api.server import ApiServer
    from capture_server.store.repositories import Store

log = get_logger("supervisor")

SPEC_ENV = "_CAPTURE_SERVER_WORKER"  # not CAPTURE_SERVER_*: that prefix is for settings
STARTUP_SECONDS = 10.0  # a worker that exits sooner than this after its start "died at start"
GIVE_UP_AFTER = 5  # deaths at start in a row of one worker: stop everything, exit 1
MAX_BACKOFF_SECONDS = 10.0
STOP_MARGIN_SECONDS = 5.0  # on top of drain_seconds before stragglers are killed
LISTEN_BACKLOG = 100  # asyncio's default


class WorkersFailing(Exception):
    """Workers keep dying at start (a bad setting, an unreachable database, ...)."""


@dataclass(frozen=True)
class Launch:
    """How a worker reads the same settings as the supervisor: the same file and the
    options given on the command line (the environment is inherited)."""

    config: Path | None
    overrides: dict[str, Any]

    def settings(self) -> Settings:
        return load_settings(self.config, **self.overrides)


@dataclass
class _Slot:
    number: int
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    deaths_at_start: int = 0
    restart_at: float | None = None


Listeners = dict[str, list[list[socket.socket]]]  # protocol → per address: one socket a slot


def bind_listeners(settings: Settings, count: int) -> Listeners:
    """Every SMTP/LMTP/SMTPS address, `count` SO_REUSEPORT sockets each, on one port."""
    listeners: Listeners = {}
    try:
        for protocol, listen in (
            ("smtp", settings.smtp_listen),
            ("lmtp", settings.lmtp_listen),
            ("smtps", settings.smtps_listen),
        ):
            if not listen:
                continue
            host, port = parse_listen(listen)
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
            seen = set()
            for family, kind, proto, _, address in infos:
                if (family, address) in seen:
                    continue
                seen.add((family, address))
                slots: list[socket.socket] = []
                listeners.setdefault(protocol, []).append(slots)
                for _ in range(count):
                    sock = socket.socket(family, kind, proto)
                    slots.append(sock)
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                    if family == socket.AF_INET6:
                        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    sock.bind((address[0], port, *address[2:]))
                    port = port or int(sock.getsockname()[1])  # port 0: all on the first's
                    sock.listen(LISTEN_BACKLOG)
    except OSError:
        close_listeners(listeners)
        raise
    return listeners


def close_listeners(listeners: Listeners) -> None:
    for addresses in listeners.values():
        for slots in addresses:
            for sock in slots:
                sock.close()


class _WorkerMetrics:
    """The workers' metrics, summed over processes by prometheus_client's multiprocess mode;
    open sessions as one total (each worker publishes its own), the quarantine gauge left
    to the supervisor (it counts files itself)."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.sessions = next(iter(metrics.SESSIONS_OPEN.describe())).name
        self.quarantine = next(iter(metrics.QUARANTINE_SIZE.describe())).name

    def collect(self) -> Iterable[Metric]:
        families: Iterable[Metric] = MultiProcessCollector(None, self.folder).collect()  # type: ignore[no-untyped-call]
        for family in families:
            if family.name == self.quarantine:
                continue
            if family.name == self.sessions:
                total = sum(sample.value for sample in family.samples)
                family.samples = [Sample(self.sessions, {}, total)]
            yield family


class Supervisor:
    def __init__(self, settings: Settings, store: Store, launch: Launch) -> None:
        self.settings = settings
        self.store = store  # /healthz and the read API
        self.launch = launch
        self.count = settings.worker_count
        self.slots = [_Slot(number) for number in range(self.count)]
        self.listeners: Listeners = {}
        self.metrics_dir: str | None = None
        self.counts: SharedCounts | None = None  # the sessions of the daemon, every worker's
        self.servers: list[asyncio.Server] = []
        self.api: ApiServer | None = None
        self.stopping = asyncio.Event()

    def main(self) -> int:
        """Run until stopped; the exit code (0: stopped on request)."""
        return asyncio.run(self.run())

    async def run(self) -> int:
        self.listeners = bind_listeners(self.settings, self.count)
        try:
            self.counts = SharedCounts.create(self.count, slots_for(self.settings.max_connections))
            bound = await self._start_once()
            for protocol, host, port in bound:
                log.info("listening", protocol=protocol, host=host, port=port)
            log.info("supervisor_started", workers=self.count, pid=os.getpid())
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, self.stopping.set)
            loop.add_signal_handler(signal.SIGHUP, self._forward, signal.SIGHUP)
            for slot in self.slots:
                self._spawn(slot)
            failing = await self._watch()
            await self._stop()
        finally:
            close_listeners(self.listeners)
            if self.counts is not None:
                self.counts.close(close_fd=True)
            if self.metrics_dir is not None:
                shutil.rmtree(self.metrics_dir, ignore_errors=True)
        if failing is not None:
            raise WorkersFailing(failing)
        return 0

    async def _start_once(self) -> list[tuple[str, str, int]]:
        """The listeners of the SMTP/LMTP sockets, then what runs in the supervisor only."""
        bound = []
        for protocol, addresses in self.listeners.items():
            for slots in addresses:
                address = slots[0].getsockname()
                bound.append((protocol, str(address[0]), int(address[1])))
        if self.settings.metrics_listen:
            self.metrics_dir = tempfile.mkdtemp(prefix="capture-server-metrics-")
            registry = CollectorRegistry()
            registry.register(_WorkerMetrics(self.metrics_dir))
            registry.register(metrics.QUARANTINE_SIZE)
            metrics.track_quarantine(self.settings.quarantine_dir)
            host, port = parse_listen(self.settings.metrics_listen)
            server = await metrics.serve_http(host, port, self.healthy, registry)
            self.servers.append(server)
            address = server.sockets[0].getsockname()
            bound.append(("metrics", str(address[0]), int(address[1])))
        if self.settings.api_listen:
            from capture_server.api.server import ApiServer

            self.api = ApiServer(self.store, self.settings.api_listen, self.settings.drain_seconds)
            bound.append(("api", *await self.api.start()))
        return bound

    def healthy(self) -> bool:
        """A worker runs and the store answers (called from a thread by /healthz)."""
        if not any(slot.process and slot.process.poll() is None for slot in self.slots):
            return False
        try:
            self.store.ping()
        except Exception:
            return False
        return True

    def _spawn(self, slot: _Slot) -> None:
        sockets = {
            protocol: [slots[slot.number] for slots in addresses]
            for protocol, addresses in self.listeners.items()
        }
        fds = {protocol: [s.fileno() for s in socks] for protocol, socks in sockets.items()}
        assert self.counts is not None
        spec = {
            "number": slot.number,
            "count": self.count,
            "supervisor": os.getpid(),
            "config": str(self.launch.config) if self.launch.config else None,
            "overrides": self.launch.overrides,
            "fds": fds,
            "counts_fd": self.counts.fd,
        }
        env = {**os.environ, SPEC_ENV: json.dumps(spec)}
        if self.metrics_dir is not None:
            env["PROMETHEUS_MULTIPROC_DIR"] = self.metrics_dir
        slot.process = subprocess.Popen(
            [sys.executable, "-m", "capture_server.workers"],
            env=env,
            pass_fds=[self.counts.fd, *(fd for numbers in fds.values() for fd in numbers)],
            stdin=subprocess.DEVNULL,
        )
        slot.started = time.monotonic()
        slot.restart_at = None
        log.info("worker_started", worker=slot.number, pid=slot.process.pid)

    def _forward(self, signum: int) -> None:
        name = signal.Signals(signum).name
        for slot in self.slots:
            if slot.process is not None and slot.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    slot.process.send_signal(signum)
        log.info("signal_forwarded", signal=name, workers=self._running())

    def _running(self) -> list[int]:
        return [s.process.pid for s in self.slots if s.process and s.process.poll() is None]

    def _reap(self, slot: _Slot) -> int | None:
        """The exit code of a worker that has just exited (logged and cleaned up), else None."""
        if slot.process is None:
            return None
        code = slot.process.poll()
        if code is None:
            return None
        pid = slot.process.pid
        slot.process = None
        how: dict[str, Any] = {"exit_code": code}
        if code < 0:
            how = {"signal": signal.Signals(-code).name}
        uptime = round(time.monotonic() - slot.started, 1)
        level = log.info if self.stopping.is_set() and code == 0 else log.warning
        level("worker_exited", worker=slot.number, pid=pid, uptime_seconds=uptime, **how)
        if self.metrics_dir is not None:  # its counters stay; its gauges go
            mark_process_dead(pid, self.metrics_dir)  # type: ignore[no-untyped-call]
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.metrics_dir, f"gauge_all_{pid}.db"))
        if self.counts is not None:  # its sessions are gone: free its part of the limits
            self.counts.reset(slot.number)
        return code

    async def _watch(self) -> str | None:
        """Restart workers that exit until asked to stop; a reason to give up, or None."""
        while not self.stopping.is_set():
            now = time.monotonic()
            for slot in self.slots:
                started = slot.started
                code = self._reap(slot)
                if code is not None:
                    if now - started < STARTUP_SECONDS:
                        slot.deaths_at_start += 1
                    else:
                        slot.deaths_at_start = 0
                    if slot.deaths_at_start >= GIVE_UP_AFTER:
                        reason = (
                            f"worker {slot.number} exited {slot.deaths_at_start} times in a row "
                            f"within {STARTUP_SECONDS:.0f} s of its start (last exit code "
                            f"{code}); see the log above. Giving up."
                        )
                        log.error("workers_failing", worker=slot.number, reason=reason)
                        return reason
                    delay = (
                        0.0
                        if slot.deaths_at_start == 0
                        else min(0.5 * 2 ** (slot.deaths_at_start - 1), MAX_BACKOFF_SECONDS)
                    )
                    slot.restart_at = now + delay
                    log.info("worker_restart_scheduled", worker=slot.number, delay_seconds=delay)
                if slot.process is None and slot.restart_at is not None and now >= slot.restart_at:
                    self._spawn(slot)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), 0.1)
        return None

    async def _stop(self) -> None:
        """Forward SIGTERM, wait for every worker's drain, kill stragglers, close the rest."""
        self.stopping.set()
        log.info("draining", grace_seconds=self.settings.drain_seconds, workers=self._running())
        # Our copies of the listening sockets: once the workers close theirs, connecting fails.
        close_listeners(self.listeners)
        self._forward(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.drain_seconds + STOP_MARGIN_SECONDS
        while any(slot.process is not None for slot in self.slots):
            for slot in self.slots:
                self._reap(slot)
            if time.monotonic() >= deadline:
                for slot in self.slots:
                    if slot.process is not None:
                        log.warning("worker_killed", worker=slot.number, pid=slot.process.pid)
                        slot.process.kill()
                        slot.process.wait()
                        self._reap(slot)
                break
            await asyncio.sleep(0.05)
        for server in self.servers:
            server.close()
            await server.wait_closed()
        if self.api is not None:
            await self.api.stop(self.settings.drain_seconds)
        log.info("stopped")


def worker_main() -> None:
    """A worker: `python -m capture_server.workers`, started by the supervisor only."""
    from capture_server.daemon import Daemon, WorkerRole, run_loop
    from capture_server.store.db import make_engine
    from capture_server.store.repositories import Store

    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the daemon's own handler is set
    raw = os.environ.pop(SPEC_ENV, None)
    if raw is None:
        sys.exit("capture_server.workers is started by `capture-server serve` (workers > 1)")
    spec = json.loads(raw)
    number = int(spec["number"])
    bind_process(worker=number, pid=os.getpid())
    config = Path(spec["config"]) if spec["config"] else None
    launch = Launch(config, dict(spec["overrides"]))
    try:
        current = launch.settings()
    except ConfigError as error:
        sys.stderr.write(f"worker {number}: {error}\n")
        sys.exit(2)
    configure_logging(current.log_format, current.log_level)
    sockets = {
        protocol: [socket.socket(fileno=fd) for fd in fds] for protocol, fds in spec["fds"].items()
    }
    counts = SharedCounts(int(spec["counts_fd"]), number)
    counts.reset()  # what a predecessor in this slot left, should the supervisor not have
    role = WorkerRole(number, int(spec["supervisor"]), counts, sockets, int(spec["count"]))
    try:
        engine = make_engine(
            current.database_url, lock_timeout=current.database_lock_timeout_seconds
        )
        store = Store(engine)
        run_loop(Daemon(current, store, launch.settings, role).run(), current.event_loop)
    except Exception:
        get_logger("daemon").exception("worker_failed")
        sys.exit(1)


if __name__ == "__main__":
    worker_main()
