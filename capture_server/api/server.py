"""uvicorn inside an event loop someone else owns: the daemon's, or `capture-server api`'s."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import uvicorn

from capture_server.api.app import build_app
from capture_server.config import parse_listen
from capture_server.store.repositories import Store


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The owner of the loop handles SIGTERM/SIGHUP; uvicorn's own handlers would steal them.
        yield


class ApiServer:
    def __init__(self, store: Store, listen: str, grace_seconds: float = 5.0) -> None:
        self.host, self.port = parse_listen(listen)
        config = uvicorn.Config(
            build_app(store),
            log_config=None,  # structlog owns logging; uvicorn's own lines stay quiet
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=max(1, int(grace_seconds)),
            server_header=False,
        )
        self.server = _Server(config)
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> tuple[str, int]:
        """Bind (port 0: the kernel picks), serve in a task; returns the bound address."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        self.task = asyncio.create_task(self.server.serve(sockets=[sock]))
        while not self.server.started:
            if self.task.done():
                self.task.result()  # raises what stopped it
                raise OSError(f"the API server on {self.host}:{self.port} did not start")
            await asyncio.sleep(0.01)
        address = sock.getsockname()
        return str(address[0]), int(address[1])

    async def stop(self, timeout: float = 10.0) -> None:
        if self.task is None:
            return
        self.server.should_exit = True
        try:
            await asyncio.wait_for(self.task, max(0.5, timeout))
        except TimeoutError:
            self.server.force_exit = True
            self.task.cancel()
