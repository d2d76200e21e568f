"""The bare baseline: aiosmtpd accepting every recipient and discarding every message.

Same aiosmtpd SMTP class, size limit and event loop as capture-server (uvloop when installed,
unless CAPTURE_BENCH_SET_EVENT_LOOP=asyncio asks both for asyncio's), no pipeline, no database.
Usage: python3 bench/sink.py 127.0.0.1:PORT   (SIGTERM or SIGINT stops it)
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import sys
from typing import Any

from aiosmtpd.smtp import SMTP

MAX_MESSAGE_BYTES = 100 * 1024 * 1024  # capture-server's default max_message_bytes


class Discard:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        envelope.original_content = envelope.content = None
        return "250 2.0.0 OK discarded"


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    handler = Discard()

    def factory() -> SMTP:
        return SMTP(
            handler,
            data_size_limit=MAX_MESSAGE_BYTES,
            enable_SMTPUTF8=True,
            hostname="sink.localhost",
            ident="bench-sink",
            loop=loop,
        )

    server = await loop.create_server(factory, host, port, reuse_address=True)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"sink listening on {host}:{port} ({type(loop).__module__})", flush=True)
    await stop.wait()
    server.close()
    await server.wait_closed()


def main() -> None:
    host, _, port = (sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:2526").rpartition(":")
    if host not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("the sink listens on loopback only")
    choice = os.environ.get("CAPTURE_BENCH_SET_EVENT_LOOP", "auto")
    if choice != "asyncio" and importlib.util.find_spec("uvloop") is not None:
        import uvloop

        uvloop.run(serve(host, int(port)))
    else:
        asyncio.run(serve(host, int(port)))


if __name__ == "__main__":
    main()
