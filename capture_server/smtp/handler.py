"""aiosmtpd handler: RCPT resolves capture addresses, DATA runs the capture path per recipient."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from capture_server.capture import CaptureService
from capture_server.logging import get_logger
from capture_server.pipeline.message import CaptureTarget, Envelope
from capture_server.smtp import replies
from capture_server.store.repositories import StoreUnavailable

log = get_logger("smtp")


class InFlight:
    """Sessions holding an accepted transaction, so SIGTERM can wait for them to finish."""

    def __init__(self) -> None:
        self.sessions: set[Any] = set()
        self.draining = False

    def pending(self) -> int:
        self.sessions = {s for s in self.sessions if _connected(s)}
        return len(self.sessions)


def _connected(server: Any) -> bool:
    transport = getattr(server, "transport", None)
    return transport is not None and not transport.is_closing()


class CaptureHandler:
    def __init__(
        self, service: CaptureService, protocol: str, in_flight: InFlight | None = None
    ) -> None:
        self.service = service
        self.protocol = protocol
        self.in_flight = in_flight or InFlight()
        self.capture_domain = service.settings.capture_domain
        self.max_recipients = service.settings.max_recipients

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if self.in_flight.draining:
            return replies.SHUTTING_DOWN
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        envelope.capture_targets = []
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if self.in_flight.draining:
            return replies.SHUTTING_DOWN
        if len(envelope.rcpt_tos) >= self.max_recipients:
            return replies.TOO_MANY_RECIPIENTS
        domain = address.rpartition("@")[2].lower().rstrip(".")
        if domain != self.capture_domain:
            return replies.relay_denied(address, self.capture_domain)
        try:
            target = await asyncio.to_thread(self.service.store.resolve_capture_address, address)
        except StoreUnavailable:
            log.warning("store_unavailable", during="RCPT")
            return replies.TEMPORARY_FAILURE
        if target is None:
            return replies.unknown_recipient(address)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        envelope.capture_targets.append(target)
        self.in_flight.sessions.add(server)
        return replies.RCPT_OK

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        try:
            raw: bytes = envelope.original_content or b""
            targets: list[CaptureTarget] = envelope.capture_targets
            received_at = datetime.now(UTC)
            answers = []
            for rcpt, target in zip(envelope.rcpt_tos, targets, strict=True):
                message_envelope = Envelope(
                    mail_from=envelope.mail_from or "",
                    rcpt=rcpt,
                    protocol=self.protocol,
                    received_at=received_at,
                    client_ip=str(session.peer[0]) if session.peer else "",
                    helo=session.host_name or "",
                )
                answers.append(await self._capture_one(raw, message_envelope, target))
        finally:
            self.in_flight.sessions.discard(server)
        if self.protocol == "lmtp":
            return "\r\n".join(answers)  # LMTP: one reply per accepted recipient, in order
        return replies.combine(answers)

    async def _capture_one(self, raw: bytes, envelope: Envelope, target: CaptureTarget) -> str:
        try:
            outcome = await asyncio.to_thread(self.service.capture, raw, envelope, target)
        except StoreUnavailable as error:
            log.warning("store_unavailable", during="DATA", error=str(error)[:200])
            return replies.TEMPORARY_FAILURE
        except Exception:
            # Not even the quarantine took it (disk full?): the client must keep the message.
            log.error("capture_failed", account=target.account_slug, exc_info=True)
            return replies.INTERNAL_ERROR
        return outcome.reply

    async def handle_exception(self, error: Exception) -> str:
        # aiosmtpd's default would send the exception text to the client.
        log.error("smtp_session_error", error=type(error).__name__, exc_info=error)
        return replies.INTERNAL_ERROR
