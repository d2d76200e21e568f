"""An IPv4 client is one client whether it arrives as 192.0.2.1 or as ::ffff:192.0.2.1.

The daemon's own IPv6 listeners are IPv6-only (asyncio's default; workers.py sets it), so
a mapped peer comes from a socket the sessions are served on in-process here: one IPv4
listener and one dual-stack listener sharing one SessionGuard, as two listeners of a daemon
do. A mapped PROXY source is tested against the real daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from capture_server.config import Settings
from capture_server.smtp.handler import client_ip
from capture_server.smtp.server import CaptureSMTP, SessionGuard
from capture_server.smtp.shared_counts import SharedCounts
from tests.conftest import Cli, make_account, start_daemon
from tests.smtp.test_hardening import send_behind_balancer


def dual_stack_listener() -> socket.socket:
    """An IPv6 socket that IPv4 clients of 127.0.0.1 reach as ::ffff:127.0.0.x."""
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(("::ffff:127.0.0.1", 0))
    except OSError as error:
        sock.close()
        pytest.skip(f"no dual-stack IPv6 socket here: {error}")
    sock.listen(16)
    sock.setblocking(False)
    return sock


class Recorder:
    """The handler: accepts a PROXY header, records what MAIL sees of the client."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    async def handle_PROXY(self, server: Any, session: Any, envelope: Any, proxy: Any) -> bool:
        return bool(proxy and proxy.valid)

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        self.seen.append((client_ip(session), str(session.peer[0])))
        envelope.mail_from = address
        return "250 2.1.0 OK"


@contextlib.asynccontextmanager
async def serving(guard: SessionGuard, handler: Recorder) -> AsyncIterator[tuple[int, int]]:
    """(IPv4 port, dual-stack port), both served with one guard."""
    loop = asyncio.get_running_loop()
    proxied = guard.settings.proxy_protocol_from

    def session() -> CaptureSMTP:
        return CaptureSMTP(
            handler, guard=guard, hostname="mx.test", loop=loop,
            proxy_protocol_timeout=5.0 if proxied else None,
        )  # fmt: skip

    plain = await loop.create_server(session, "127.0.0.1", 0)
    dual = await loop.create_server(session, sock=dual_stack_listener())
    try:
        yield plain.sockets[0].getsockname()[1], dual.sockets[0].getsockname()[1]
    finally:
        for server in (plain, dual):
            server.close()
            await server.wait_closed()


async def connect(port: int, source: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))


async def command(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: str) -> str:
    writer.write(line.encode() + b"\r\n")
    reply = await reader.readline()
    while reply[3:4] == b"-":
        reply = await reader.readline()
    return reply.decode()


@pytest.mark.parametrize("shared", [False, True], ids=["one-process", "shared-counts"])
def test_both_forms_of_one_client_meet_one_per_ip_limit(shared: bool) -> None:
    counts = SharedCounts.create(workers=1, slots=16) if shared else None
    guard = SessionGuard(Settings(max_connections_per_ip=1), counts)
    handler = Recorder()

    async def run() -> None:
        async with serving(guard, handler) as (plain_port, dual_port):
            first = await connect(plain_port, "127.0.0.9")
            assert (await first[0].readline()).startswith(b"220")
            # The same client on the dual-stack listener (peer ::ffff:127.0.0.9): its second.
            second = await connect(dual_port, "127.0.0.9")
            assert (await second[0].readline()).startswith(b"421 4.7.0")
            assert dict(guard.open_by_ip) == {"127.0.0.9": 1}
            # Another client is still welcome there, and is seen in the IPv4 form.
            other = await connect(dual_port, "127.0.0.10")
            assert (await other[0].readline()).startswith(b"220")
            assert (await command(*other, "EHLO c.test"))[:3] == "250"
            assert (await command(*other, "MAIL FROM:<a@b.test>"))[:3] == "250"
            assert handler.seen == [("127.0.0.10", "127.0.0.10")]
            assert dict(guard.open_by_ip) == {"127.0.0.9": 1, "127.0.0.10": 1}
            for _, writer in (first, second, other):
                writer.close()
            for _ in range(100):  # the sessions end; every count goes
                if not guard.open_by_ip:
                    break
                await asyncio.sleep(0.02)
            assert not guard.open_by_ip

    try:
        asyncio.run(run())
        if counts is not None:
            assert counts.total() == 0
    finally:
        if counts is not None:
            counts.close(close_fd=True)


@pytest.mark.parametrize("configured", ["127.0.0.2", "127.0.0.0/24"])
def test_a_load_balancer_on_a_dual_stack_socket_is_recognised(configured: str) -> None:
    """Configured as IPv4, it connects as ::ffff:127.0.0.2: its PROXY header is honoured,
    it is exempt from the per-IP limit, and the client it names is seen as IPv4."""
    settings = Settings(max_connections_per_ip=1, proxy_protocol_from=(configured,))
    guard = SessionGuard(settings)
    handler = Recorder()

    async def run() -> None:
        async with serving(guard, handler) as (_, dual_port):
            sessions = []
            for number in range(2):
                reader, writer = await connect(dual_port, "127.0.0.2")
                source = f"::ffff:203.0.113.{number + 1}"
                writer.write(f"PROXY TCP6 {source} ::ffff:127.0.0.1 4000 25\r\n".encode())
                assert (await reader.readline()).startswith(b"220")
                assert (await command(reader, writer, "EHLO lb.test"))[:3] == "250"
                assert (await command(reader, writer, "MAIL FROM:<a@b.test>"))[:3] == "250"
                sessions.append(writer)
            assert handler.seen == [("203.0.113.1", "127.0.0.2"), ("203.0.113.2", "127.0.0.2")]
            assert dict(guard.open_by_ip) == {"127.0.0.2": 2}
            for writer in sessions:
                writer.close()

    asyncio.run(run())


def proxy_v2_tcp6(source: str, destination: str, ports: tuple[int, int]) -> bytes:
    addresses = socket.inet_pton(socket.AF_INET6, source) + socket.inet_pton(
        socket.AF_INET6, destination
    )
    tail = ports[0].to_bytes(2, "big") + ports[1].to_bytes(2, "big")
    # signature, version 2 / PROXY, TCP over IPv6, 36 address bytes
    return b"\r\n\r\n\x00\r\nQUIT\n\x21\x21\x00\x24" + addresses + tail


def test_a_mapped_proxy_source_is_the_ipv4_client(
    database_url: str, tmp_path: Path, cli: Cli
) -> None:
    """The daemon behind a dual-stack load balancer: PROXY v1 and v2 name the client in the
    mapped form; its capture is logged with the IPv4 address."""
    account = make_account(cli)
    daemon = start_daemon(database_url, tmp_path, proxy_protocol_from='["127.0.0.2/32"]')
    try:
        headers = [
            b"PROXY TCP6 ::ffff:203.0.113.7 ::ffff:127.0.0.1 40000 25\r\n",
            proxy_v2_tcp6("::ffff:198.51.100.9", "::ffff:127.0.0.1", (40001, 25)),
            b"PROXY TCP6 2001:db8::7 2001:db8::1 40002 25\r\n",  # IPv6 stays IPv6
        ]
        for number, header in enumerate(headers):
            send_behind_balancer(daemon.smtp_port, header, account.bcc, f"mapped-{number}")
    finally:
        assert daemon.stop() == 0
    captured = [
        json.loads(line) for line in daemon.log().splitlines() if "message_captured" in line
    ]
    assert [event["client_ip"] for event in captured] == [
        "203.0.113.7", "198.51.100.9", "2001:db8::7"
    ]  # fmt: skip
    assert "::ffff:" not in daemon.log()
