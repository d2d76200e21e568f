"""The daemon: owns the event loop, the SMTP and LMTP listeners, and the SIGTERM drain."""

from __future__ import annotations

import asyncio
import signal
import ssl
import weakref
from collections.abc import Callable
from typing import Any

from capture_server import metrics
from capture_server.api.server import ApiServer
from capture_server.capture import CaptureService
from capture_server.config import Settings, parse_listen
from capture_server.logging import configure_logging, get_logger
from capture_server.smtp.handler import CaptureHandler, InFlight
from capture_server.smtp.notify import Notifier
from capture_server.smtp.server import CaptureLMTP, CaptureSMTP, SessionGuard
from capture_server.store.repositories import Store
from capture_server.store.webhooks import WebhookWorker
from capture_server.store.writer import GroupWriter

log = get_logger("daemon")


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
})  # fmt: skip


def restart_only(key: str) -> bool:
    return key in RESTART_ONLY or key.endswith("_listen")


class Daemon:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        reload: Callable[[], Settings] | None = None,
    ) -> None:
        self.settings = settings
        self.load_settings = reload  # re-reads the same file and environment (SIGHUP)
        self.service = CaptureService(store, settings)
        sqlite = store.engine.dialect.name == "sqlite"
        if settings.group_commit == "on" or (settings.group_commit == "auto" and sqlite):
            self.service.recorder = GroupWriter(store).record
        self.in_flight = InFlight()
        self.servers: list[asyncio.Server] = []
        self.sessions: weakref.WeakSet[Any] = weakref.WeakSet()
        self.stopping = asyncio.Event()
        self.notifier = Notifier(store, settings)
        self.webhooks = WebhookWorker(store, settings)  # sends the outbox in the background
        self.guard = SessionGuard(settings)
        self.tls_context = tls_context(settings)
        self.api: ApiServer | None = None  # the read API, when api_listen is set

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
            host, port = parse_listen(listen)
            implicit = protocol == "smtps"
            server = await loop.create_server(
                self._factory("smtp" if implicit else protocol, implicit_tls=implicit),
                host,
                port,
                reuse_address=True,
                ssl=self.tls_context if implicit else None,
            )
            self.servers.append(server)
            for sock in server.sockets:
                address = sock.getsockname()
                bound.append((protocol, str(address[0]), int(address[1])))
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
        self.webhooks.start()
        return bound

    def healthy(self) -> bool:
        """The store answers (called from a thread by /healthz)."""
        try:
            self.service.store.ping()
        except Exception:
            return False
        return True

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
        self.guard.settings = new
        self.notifier.use_settings(new)
        self.webhooks.settings = new
        configure_logging(new.log_format, new.log_level)
        log.info("settings_reloaded", changed=changed)

    async def drain(self) -> None:
        """Stop accepting, let transactions in flight finish (bounded), then close."""
        self.in_flight.draining = True
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
        await self.start()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        await self.stopping.wait()
        log.info("draining", grace_seconds=self.settings.drain_seconds)
        await self.drain()
