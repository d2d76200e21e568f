"""structlog set-up: JSON off a terminal, console on one; bodies never, addresses masked."""

from __future__ import annotations

import logging as stdlib_logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO, cast

import structlog

# Keys whose values must never reach a log line, whatever a caller passes.
_FORBIDDEN_KEYS = frozenset({"body", "body_text", "raw", "content", "html"})
# Keys holding addresses: kept, but only the domain and the first letter of the local part.
_ADDRESS_KEYS = frozenset({"mail_from", "rcpt", "sender", "from_address", "address"})


def mask_address(address: str) -> str:
    """'alice@example.com' → 'a***@example.com': enough to follow a message, not to harvest."""
    local, at, domain = address.rpartition("@")
    if not at:
        return "***" if address else ""
    return f"{local[:1]}***@{domain}"


def redact(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event):
        if key in _FORBIDDEN_KEYS:
            event[key] = "[redacted]"
        elif key in _ADDRESS_KEYS and isinstance(event[key], str):
            event[key] = mask_address(event[key])
    return event


# Fields every line of this process carries (a worker's number and pid: see workers.py).
_PROCESS_FIELDS: dict[str, Any] = {}


def bind_process(**fields: Any) -> None:
    """Add fields to every line this process writes, from any thread, across reconfiguration."""
    _PROCESS_FIELDS.update(fields)


def _add_process_fields(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key, value in _PROCESS_FIELDS.items():
        event.setdefault(key, value)
    return event


class _CurrentStderr:
    """Whatever sys.stderr is when a line is written (tests and embedders swap it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(log_format: str = "auto", level: str = "info") -> None:
    use_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            _add_process_fields,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            stdlib_logging.getLevelName(level.upper())
        ),
        # One write per line (print() makes two): worker processes share the log file, and
        # two writes of different processes can interleave.
        logger_factory=structlog.WriteLoggerFactory(file=cast(TextIO, _CurrentStderr())),
        cache_logger_on_first_use=False,
    )
    # aiosmtpd logs every session through the standard library: keep only its warnings.
    stdlib_logging.getLogger("mail.log").setLevel(stdlib_logging.WARNING)


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
