"""Prometheus metrics and the opt-in HTTP endpoint serving /metrics and /healthz."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from capture_server.logging import get_logger

log = get_logger("metrics")
REGISTRY = CollectorRegistry()
_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

MESSAGES = Counter(
    "capture_messages", "Messages decided, by decision and reason", ["decision", "reason"],
    registry=REGISTRY,
)  # fmt: skip
REPLIES = Counter(
    "capture_smtp_replies", "SMTP/LMTP replies to DATA, by code", ["code"], registry=REGISTRY
)
STAGE_SECONDS = Histogram(
    "capture_stage_seconds", "Time in each pipeline stage", ["stage"], buckets=_LATENCY,
    registry=REGISTRY,
)  # fmt: skip
STORE_SECONDS = Histogram(
    "capture_store_seconds", "Time in store operations", ["operation"], buckets=_LATENCY,
    registry=REGISTRY,
)  # fmt: skip
SESSIONS_OPEN = Gauge("capture_sessions_open", "Open SMTP/LMTP sessions", registry=REGISTRY)
MEMORY_BUDGET_IN_USE = Gauge(
    "capture_memory_budget_bytes", "Bytes of big messages being processed (smtp/budget.py)",
    registry=REGISTRY, multiprocess_mode="livesum",
)  # fmt: skip
MEMORY_BUDGET_WAITS = Counter(
    "capture_memory_budget_waits", "Big messages that waited for the memory budget",
    registry=REGISTRY,
)  # fmt: skip
QUARANTINE_SIZE = Gauge(
    "capture_quarantine_messages", "Messages held in the quarantine", registry=REGISTRY
)


def observe_stage(stage: str, seconds: float) -> None:
    _stage_histogram(stage).observe(seconds)


@functools.cache
def _stage_histogram(stage: str) -> Histogram:
    """One stage's histogram: labels() takes a lock and builds a key, a dozen times a message."""
    return STAGE_SECONDS.labels(stage)


def track_quarantine(folder: Path) -> None:
    QUARANTINE_SIZE.set_function(lambda: sum(1 for _ in folder.glob("q_*.msg")))


async def serve_http(
    host: str, port: int, healthy: Callable[[], bool], registry: CollectorRegistry = REGISTRY
) -> asyncio.Server:
    """A minimal HTTP/1.0 endpoint: GET /metrics and GET /healthz, nothing else.

    registry: this process's metrics, or (a supervisor of workers) their aggregate.
    """

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), timeout=5)
            parts = request.decode("latin-1").split()
            path = parts[1] if len(parts) >= 2 and parts[0] in ("GET", "HEAD") else ""
            if path == "/metrics":
                status, body, kind = "200 OK", generate_latest(registry), CONTENT_TYPE_LATEST
            elif path == "/healthz":
                ok = await asyncio.to_thread(healthy)
                status = "200 OK" if ok else "503 Service Unavailable"
                body, kind = (b"ok\n" if ok else b"store unreachable\n"), "text/plain"
            else:
                status, body, kind = "404 Not Found", b"not found\n", "text/plain"
            head = f"HTTP/1.0 {status}\r\nContent-Type: {kind}\r\n"
            head += f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            writer.write(head.encode("latin-1") + (b"" if parts[:1] == ["HEAD"] else body))
            await writer.drain()
        except (TimeoutError, ConnectionError, UnicodeDecodeError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(respond, host, port)
