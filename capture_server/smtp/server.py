"""aiosmtpd protocol classes with the daemon's limits; every reply goes through replies."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, AnyStr

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import MISSING, SMTP, syntax

from capture_server.client_address import address_in, unmapped
from capture_server.config import Settings
from capture_server.logging import get_logger
from capture_server.smtp import replies
from capture_server.smtp.budget import MemoryBudget
from capture_server.smtp.data import SPOOL_IN_MEMORY, DataState, read_data
from capture_server.smtp.paths import plain_path
from capture_server.smtp.shared_counts import Admission, SharedCounts

log = get_logger("smtp")
_JUNK_COMMANDS = ("NOOP", "RSET", "VRFY", "EXPN", "HELP")


@dataclass
class SessionGuard:
    """Connection counts and the memory budget shared by every session of the daemon
    (one event loop: no locks).

    A worker of several (workers.py) has `shared`: the whole daemon's counts across the
    worker processes (smtp/shared_counts.py), where max_connections and
    max_connections_per_ip are checked; `open_total` and `open_by_ip` are then this
    worker's own (its sessions gauge; the fallback of an address the table has no row for)."""

    settings: Settings
    shared: SharedCounts | None = None
    open_total: int = 0
    open_by_ip: Counter[str] = field(default_factory=Counter)
    unshared_by_ip: Counter[str] = field(default_factory=Counter)  # Admission.UNSHARED ones
    budget: MemoryBudget = field(init=False)

    def __post_init__(self) -> None:
        self.budget = MemoryBudget(lambda: self.settings.message_memory_bytes, SPOOL_IN_MEMORY)

    def admit(self, ip: str) -> str | None:
        """None when the client may connect; else the 421 reply to close with."""
        if self.shared is not None:
            return self._admit_shared(self.shared, ip)
        if self.open_total >= self.settings.max_connections:
            return replies.TOO_MANY_CONNECTIONS
        if self.open_by_ip[ip] >= self.settings.max_connections_per_ip and not self.is_proxy(ip):
            return replies.TOO_MANY_CONNECTIONS_FROM_YOU
        self.open_total += 1
        self.open_by_ip[ip] += 1
        return None

    def _admit_shared(self, shared: SharedCounts, ip: str) -> str | None:
        limit = self.settings.max_connections_per_ip
        proxy = self.is_proxy(ip)
        # An address without a row in a full table: this worker's 1/N of the limit, rounded
        # up (what each worker counted before the counts were shared).
        local_ok = proxy or self.open_by_ip[ip] < -(-limit // shared.workers)
        admission = shared.admit(
            ip, self.settings.max_connections, None if proxy else limit, local_ok
        )
        if admission is Admission.TOO_MANY:
            return replies.TOO_MANY_CONNECTIONS
        if admission is Admission.TOO_MANY_FROM_IP:
            return replies.TOO_MANY_CONNECTIONS_FROM_YOU
        if admission is Admission.UNSHARED:
            self.unshared_by_ip[ip] += 1
        self.open_total += 1
        self.open_by_ip[ip] += 1
        return None

    def release(self, ip: str) -> None:
        if self.shared is not None:
            unshared = self.unshared_by_ip[ip] > 0
            if unshared:
                self.unshared_by_ip[ip] -= 1
                if self.unshared_by_ip[ip] <= 0:
                    del self.unshared_by_ip[ip]
            self.shared.release(ip, shared=not unshared)
        self.open_total -= 1
        self.open_by_ip[ip] -= 1
        if self.open_by_ip[ip] <= 0:
            del self.open_by_ip[ip]

    def is_proxy(self, ip: str) -> bool:
        return address_in(ip, self.settings.proxy_protocol_from)

    def call_limits(self) -> dict[str, int]:
        limits = {"*": 1_000_000, "RCPT": 1_000_000}
        limits.update(dict.fromkeys(_JUNK_COMMANDS, self.settings.junk_command_limit))
        return limits


class _Guarded:
    """Limits every session shares: connections, hard errors, junk commands, line length."""

    transport: Any
    session: Any
    _proxy_timeout: float | None

    def __init__(self, handler: Any, *, guard: SessionGuard, **kwargs: Any) -> None:
        self.guard = guard
        self.errors = 0
        self.admitted_ip: str | None = None
        # aiosmtpd sizes its stream buffer from this class attribute in __init__.
        self.line_length_limit = guard.settings.max_line_length
        super().__init__(handler, command_call_limit=guard.call_limits(), **kwargs)  # type: ignore[call-arg]

    def connection_made(self, transport: Any) -> None:
        if self.admitted_ip is None and getattr(self, "_original_transport", None) is None:
            peer = transport.get_extra_info("peername") or ("", 0)
            ip = unmapped(str(peer[0]))  # one form per client (client_address.py)
            refusal = self.guard.admit(ip)
            if refusal is not None:
                log.warning("connection_refused", client_ip=ip, reply=refusal)
                transport.write(refusal.encode("ascii") + b"\r\n")
                transport.close()
                return
            self.admitted_ip = ip
            if not self.guard.is_proxy(ip):
                # A PROXY header is honoured from configured load balancers only.
                self._proxy_timeout = None
        super().connection_made(transport)  # type: ignore[misc]
        session = getattr(self, "session", None)  # aiosmtpd's (its log lines, client_ip())
        if session is not None and isinstance(session.peer, tuple) and session.peer:
            session.peer = (unmapped(str(session.peer[0])), *session.peer[1:])

    def connection_lost(self, error: Exception | None) -> None:
        if self.admitted_ip is None:
            return  # refused before aiosmtpd set anything up
        self.guard.release(self.admitted_ip)
        self.admitted_ip = None
        super().connection_lost(error)  # type: ignore[misc]

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        # Plain <local@domain> the quick way (smtp/paths.py); the rest as aiosmtpd reads it.
        smtp: Any = self
        found = plain_path(arg, smtp.local_part_limit)
        return found if found is not None else super()._getaddr(arg)  # type: ignore[misc]

    async def push(self, status: AnyStr) -> None:
        reply: str | bytes = replies.translate(status) if isinstance(status, str) else status
        if isinstance(reply, str) and reply[:1] == "5":
            self.errors += 1
        await super().push(reply)  # type: ignore[misc]
        if self.errors >= self.guard.settings.hard_error_limit and self.transport is not None:
            log.warning("hard_error_limit", client_ip=self.admitted_ip, errors=self.errors)
            await super().push(replies.TOO_MANY_ERRORS)  # type: ignore[misc]
            self.transport.close()

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        """aiosmtpd's DATA with the message spooled, not held as lines (smtp/data.py)."""
        smtp: Any = self
        if smtp._decode_data:  # str content is not what the handler reads: aiosmtpd's own
            await super().smtp_DATA(arg)  # type: ignore[misc]
            return
        if await smtp.check_helo_needed() or await smtp.check_auth_needed("DATA"):
            return
        if not smtp.envelope.rcpt_tos:
            await self.push(replies.DATA_NEEDS_RCPT)
            return
        if arg:
            await self.push(replies.DATA_SYNTAX)
            return
        await self.push(replies.DATA_GO_AHEAD)
        try:
            read = await read_data(
                smtp._reader,
                smtp.data_size_limit,
                smtp.line_length_limit,
                lambda: self.transport is not None,
            )
        except asyncio.CancelledError:
            smtp._writer.close()  # the connection was reset during DATA
            raise
        if read.state is DataState.LOST:
            return
        if read.state is not DataState.NOMINAL:
            too_long = read.state is DataState.TOO_LONG
            await self.push(replies.LINE_TOO_LONG if too_long else replies.MESSAGE_TOO_BIG)
            smtp._set_post_data_state()
            return
        try:
            async with self.guard.budget.reserve(read.size):
                if self.transport is None:  # gone while it waited: unacknowledged, comes again
                    return
                # decode_data is off: content and original_content are one object, as aiosmtpd.
                smtp.envelope.content = smtp.envelope.original_content = read.take()
                status = await smtp._call_handler_hook("DATA")
        finally:
            read.discard()  # closed already unless it never got its turn
        smtp._set_post_data_state()
        await self.push(replies.DATA_OK if status is MISSING else status)


class CaptureSMTP(_Guarded, SMTP):
    pass


class CaptureLMTP(_Guarded, LMTP):
    pass
