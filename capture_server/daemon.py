"""The daemon: owns the event loop, the SMTP and LMTP listeners, and the SIGTERM drain."""

from __future__ import annotations

import asyncio
import signal
import weakref
from collections.abc import Callable
from typing import Any

from capture_server.capture import CaptureService
from capture_server.config import Settings, parse_listen
from capture_server.logging import get_logger
from capture_server.smtp.handler import CaptureHandler, InFlight
from capture_server.smtp.server import CaptureLMTP, CaptureSMTP
from capture_server.store.repositories import Store

log = get_logger("daemon")


class Daemon:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.service = CaptureService(store, settings)
        self.in_flight = InFlight()
        self.servers: list[asyncio.Server] = []
        self.sessions: weakref.WeakSet[Any] = weakref.WeakSet()
        self.stopping = asyncio.Event()

    def _factory(self, protocol: str) -> Callable[[], Any]:
        handler = CaptureHandler(self.service, protocol, self.in_flight)
        session_class = CaptureLMTP if protocol == "lmtp" else CaptureSMTP
        loop = asyncio.get_running_loop()

        def make_session() -> Any:
            session = session_class(
                handler,
                data_size_limit=self.settings.max_message_bytes,
                enable_SMTPUTF8=True,
                hostname=self.settings.hostname,
                ident="capture-server",
                timeout=self.settings.smtp_timeout_seconds,
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
        ):
            if not listen:
                continue
            host, port = parse_listen(listen)
            server = await loop.create_server(
                self._factory(protocol), host, port, reuse_address=True
            )
            self.servers.append(server)
            for sock in server.sockets:
                address = sock.getsockname()
                bound.append((protocol, str(address[0]), int(address[1])))
        for protocol, host, port in bound:
            log.info("listening", protocol=protocol, host=host, port=port)
        return bound

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
        log.info("stopped", unfinished_transactions=left)

    async def run(self) -> None:
        await self.start()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stopping.set)
        await self.stopping.wait()
        log.info("draining", grace_seconds=self.settings.drain_seconds)
        await self.drain()
