"""The daemon: owns the event loop, the SMTP and LMTP listeners, and the SIGTERM drain."""

from __future__ import annotations

import asyncio
import importlib
import os
import signal
import socket
import ssl
import weakref
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from capture_server import heap, metrics
from capture_server.api.server import ApiServer
from capture_server.archive_purge import purge_periodically, purge_scheduled
from capture_server.authentication.psl import list_source
from capture_server.capture import CaptureService
from capture_server.config import ConfigError, Settings, parse_listen
from capture_server.logging import configure_logging, get_logger
from capture_server.smtp.handler import CaptureHandler, InFlight
from capture_server.smtp.notify import Notifier
from capture_server.smtp.server import CaptureLMTP, CaptureSMTP, SessionGuard
from capture_server.smtp.shared_counts import SharedCounts
from capture_server.store.repositories import Store
from capture_server.store.webhooks import WebhookWorker
from capture_server.store.writer import GroupWriter

log = get_logger("daemon")
T = TypeVar("T")


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop setting: uvloop when asked for (or, with auto, when installed)."""
    if choice == "asyncio":
        return None
    try:
        uvloop: Any = importlib.import_module("uvloop")
    except ImportError:
        if choice == "uvloop":
            raise ConfigError(
                "event_loop is uvloop but uvloop is not installed "
                "(pip install 'capture-server[uvloop]')"
            ) from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run_loop(main: Coroutine[Any, Any, T], event_loop: str = "auto") -> T:
    """asyncio.run on the event loop the settings ask for."""
    with asyncio.Runner(loop_factory=loop_factory(event_loop)) as runner:
        return runner.run(main)


@dataclass
class WorkerRole:
    """This daemon is worker `number` of a supervisor (workers.py): it serves the listening
    sockets the supervisor bound; the supervisor serves metrics and the API and logs the
    listeners; only worker 0 sends webhooks. `counts`: the open sessions of the whole daemon,
    shared by the workers (smtp/shared_counts.py), where the connection limits are checked."""

    number: int
    supervisor_pid: int
    counts: SharedCounts
    sockets: dict[str, list[socket.socket]] = field(default_factory=dict)
    count: int = 1  # workers in all

    def share(self, settings: Settings) -> Settings:
        """The limits a whole daemon has, this worker's part of them: memory is each
        process's own, so each worker gets 1/N of it. The connection limits are checked
        against `counts`, the whole daemon's (1/N each refused early: the SO_REUSEPORT hash
        does not spread one client's sessions evenly)."""
        return settings.model_copy(
            update={name: -(-getattr(settings, name) // self.count) for name in SHARED_LIMITS}
        )


# Limits of the whole daemon that workers share out, 1/N each (workers.py).
SHARED_LIMITS = ("message_memory_bytes",)


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    return context


# Settings SIGHUP does not change: listeners, storage, identity and TLS are bound at start
# (any *_listen key, whoever adds it, is a listener). A change to one needs a restart.
RESTART_ONLY = frozenset({
    "database_url", "capture_domain", "server_secret", "hostname", "quarantine_dir",
    "archive_dir", "tls_cert_file", "tls_key_file", "require_tls", "log_format",
    "workers", "event_loop", "archive_purge_hours", "database_lock_timeout_seconds",
})  # fmt: skip


def restart_only(key: str) -> bool:
    return key in RESTART_ONLY or key.endswith("_listen")


class Daemon:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        reload: Callable[[], Settings] | None = None,
        role: WorkerRole | None = None,
    ) -> None:
        self.settings = settings
        self.role = role
        self.load_settings = reload  # re-reads the same file and environment (SIGHUP)
        self.service = CaptureService(store, settings)
        sqlite = store.engine.dialect.name == "sqlite"
        if settings.group_commit == "on" or (settings.group_commit == "auto" and sqlite):
            self.service.writer = GroupWriter(store)
        self.in_flight = InFlight()
        self.servers: list[asyncio.Server] = []
        self.sessions: weakref.WeakSet[Any] = weakref.WeakSet()
        self.stopping = asyncio.Event()
        self.notifier = Notifier(store, settings)
        self.webhooks = WebhookWorker(store, settings)  # sends the outbox in the background
        self.guard = SessionGuard(self._limits(settings), role.counts if role else None)
        self.tls_context = tls_context(settings)
        self.api: ApiServer | None = None  # the read API, when api_listen is set
        self._tasks: list[asyncio.Task[None]] = []

    def _factory(self, protocol: str, implicit_tls: bool = False) -> Callable[[], Any]:
        handler = CaptureHandler(self.service, protocol, self.in_flight, self.notifier)
        session_class = CaptureLMTP if protocol == "lmtp" else CaptureSMTP
        loop = asyncio.get_running_loop()
        # STARTTLS is offered on the plain listeners; the implicit-TLS one is TLS from the start.
        starttls = None if implicit_tls else self.tls_context

        def make_session() -> Any:
            settings = self.settings  # read per session: SIGHUP may have swapped it
            session = session_class(
                handler,
                guard=self.guard,
                data_size_limit=settings.max_message_bytes,
                enable_SMTPUTF8=True,
                hostname=settings.hostname,
                ident="capture-server",
                timeout=settings.smtp_timeout_seconds,
                tls_context=starttls,
                require_starttls=settings.require_tls and starttls is not None,
                proxy_protocol_timeout=(
                    settings.proxy_protocol_timeout if settings.proxy_protocol_from else None
                ),
                loop=loop,
            )
            self.sessions.add(session)
            return session

        return make_session

    async def start(self) -> list[tuple[str, str, int]]:
        loop = asyncio.get_running_loop()
        bound = []
        for protocol, listen in (
            ("smtp", self.settings.smtp_listen),
            ("lmtp", self.settings.lmtp_listen),
            ("smtps", self.settings.smtps_listen),
        ):
            if not listen:
                continue
            implicit = protocol == "smtps"
            factory = self._factory("smtp" if implicit else protocol, implicit_tls=implicit)
            context = self.tls_context if implicit else None
            if self.role is not None:  # a worker: the supervisor bound the sockets
                servers = [
                    await loop.create_server(factory, sock=sock, ssl=context)
                    for sock in self.role.sockets.get(protocol, [])
                ]
            else:
                host, port = parse_listen(listen)
                servers = [
                    await loop.create_server(factory, host, port, reuse_address=True, ssl=context)
                ]
            for server in servers:
                self.servers.append(server)
                for sock in server.sockets:
                    address = sock.getsockname()
                    bound.append((protocol, str(address[0]), int(address[1])))
        if self.role is not None:
            return await self._start_worker(bound)
        if self.settings.metrics_listen:
            host, port = parse_listen(self.settings.metrics_listen)
            metrics.SESSIONS_OPEN.set_function(lambda: self.guard.open_total)
            metrics.track_quarantine(self.settings.quarantine_dir)
            server = await metrics.serve_http(host, port, self.healthy)
            self.servers.append(server)
            address = server.sockets[0].getsockname()
            bound.append(("metrics", str(address[0]), int(address[1])))
        if self.settings.api_listen:
            self.api = ApiServer(self.service.store, self.settings.api_listen,
                                 self.settings.drain_seconds)  # fmt: skip
            bound.append(("api", *await self.api.start()))
        for protocol, host, port in bound:
            log.info("listening", protocol=protocol, host=host, port=port)
        if not any(protocol in ("smtp", "lmtp", "smtps") for protocol, _, _ in bound):
            # Allowed (a node that only sends webhooks or serves the API), rarely meant.
            log.warning("no_mail_listener", detail="smtp_listen, lmtp_listen and smtps_listen "
                        "are all empty: this daemon receives no mail")  # fmt: skip
        self.webhooks.start()
        self._start_archive_purge()
        return bound

    async def _start_worker(self, bound: list[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
        assert self.role is not None
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # the supervisor serves /metrics
            self._tasks.append(asyncio.create_task(self._publish_sessions()))
        self._tasks.append(asyncio.create_task(self._watch_supervisor(self.role.supervisor_pid)))
        if self.role.number == 0:  # one sender of the outbox is enough (its claims are safe)
            self.webhooks.start()
            self._start_archive_purge()  # one purger is enough (the protocol allows more)
        loop = type(asyncio.get_running_loop())
        log.info("worker_ready", listeners=[f"{p} {h}:{n}" for p, h, n in bound],
                 event_loop=f"{loop.__module__}.{loop.__qualname__}")  # fmt: skip
        return bound

    def _start_archive_purge(self) -> None:
        """The archive's retention job (archive_purge.py), cancelled by the drain."""
        if purge_scheduled(self.settings):
            current = lambda: self.settings  # noqa: E731 (SIGHUP swaps the settings)
            self._tasks.append(asyncio.create_task(purge_periodically(self.service.store, current)))

    async def _publish_sessions(self) -> None:
        """Open sessions, for the supervisor's /metrics (a file of prometheus_client's
        multiprocess mode; a callback gauge cannot cross processes)."""
        while True:
            metrics.SESSIONS_OPEN.set(self.guard.open_total)
            await asyncio.sleep(1)

    async def _watch_supervisor(self, pid: int) -> None:
        """A worker whose supervisor is gone (killed) drains and exits instead of lingering."""
        while os.getppid() == pid:
            await asyncio.sleep(1)
        log.warning("supervisor_gone", supervisor_pid=pid)
        self.stopping.set()

    def healthy(self) -> bool:
        """The store answers (called from a thread by /healthz)."""
        try:
            self.service.store.ping()
        except Exception:
            return False
        return True

    def _limits(self, settings: Settings) -> Settings:
        return self.role.share(settings) if self.role is not None else settings

    def reload(self) -> None:
        """SIGHUP: read the settings again; a bad file is logged and the old settings kept."""
        if self.load_settings is None:
            log.warning("reload_unsupported")
            return
        old = self.settings
        try:
            fresh = self.load_settings()
        except Exception as error:  # a broken file must never take the daemon down
            log.error("settings_reload_failed", error=str(error)[:500])
            return
        ignored = sorted(
            key for key in type(old).model_fields
            if restart_only(key) and getattr(fresh, key) != getattr(old, key)
        )  # fmt: skip
        if ignored:
            log.warning("settings_need_restart", keys=ignored)
        # Frozen settings: build the new object and swap every reference the daemon reads.
        new = fresh.model_copy(update={key: getattr(old, key) for key in ignored})
        changed = sorted(
            key for key in type(old).model_fields if getattr(new, key) != getattr(old, key)
        )
        self.settings = new
        self.service.use_settings(new)
        self.guard.settings = self._limits(new)
        self.notifier.use_settings(new)
        self.webhooks.settings = new
        configure_logging(new.log_format, new.log_level)
        log.info("settings_reloaded", changed=changed)

    async def drain(self) -> None:
        """Stop accepting, let transactions in flight finish (bounded), then close."""
        self.in_flight.draining = True
        for task in self._tasks:
            task.cancel()
        for server in self.servers:
            server.close()
        deadline = asyncio.get_running_loop().time() + self.settings.drain_seconds
        while self.in_flight.pending() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        left = self.in_flight.pending()
        for session in list(self.sessions):
            transport = getattr(session, "transport", None)
            if transport is not None and not transport.is_closing():
                transport.close()
        for server in self.servers:
            await server.wait_closed()
        await self.notifier.drain(max(0.0, deadline - asyncio.get_running_loop().time()))
        await self.webhooks.stop(deadline - asyncio.get_running_loop().time())
        if self.api is not None:
            await self.api.stop(deadline - asyncio.get_running_loop().time())
        log.info("stopped", unfinished_transactions=left)

    async def run(self) -> None:
        # Read before listening (it takes tens of ms), not by the first message's DMARC check.
        log.info("public_suffix_list", source=list_source())
        await self.start()
        heap.settle()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        await self.stopping.wait()
        log.info("draining", grace_seconds=self.settings.drain_seconds)
        await self.drain()
