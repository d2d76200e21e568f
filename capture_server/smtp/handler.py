"""aiosmtpd handler: RCPT resolves capture addresses, DATA runs the capture path per recipient."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from structlog.contextvars import bound_contextvars

from capture_server import metrics
from capture_server.capture import CaptureService
from capture_server.capture_addresses import address_key
from capture_server.client_address import unmapped
from capture_server.logging import get_logger
from capture_server.pipeline.message import AuthEvidence, CaptureTarget, Envelope
from capture_server.pipeline.parse import clean_text
from capture_server.smtp import replies
from capture_server.smtp.notify import Notifier
from capture_server.store.repositories import StoreUnavailable, new_id

log = get_logger("smtp")


class InFlight:
    """Sessions holding an accepted transaction, so SIGTERM can wait for them to finish."""

    def __init__(self) -> None:
        self.sessions: set[Any] = set()
        self.draining = False

    def pending(self) -> int:
        self.sessions = {s for s in self.sessions if _connected(s)}
        return len(self.sessions)


def client_ip(session: Any) -> str:
    """The real client: from a load balancer's PROXY header when there was one; an
    IPv4-mapped IPv6 address in its IPv4 form (client_address.py)."""
    proxy = getattr(session, "proxy_data", None)
    if proxy is not None and getattr(proxy, "src_addr", None):
        return unmapped(str(proxy.src_addr))
    return unmapped(str(session.peer[0])) if session.peer else ""


def _connected(server: Any) -> bool:
    transport = getattr(server, "transport", None)
    return transport is not None and not transport.is_closing()


class CaptureHandler:
    def __init__(
        self,
        service: CaptureService,
        protocol: str,
        in_flight: InFlight | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.service = service
        self.protocol = protocol
        self.in_flight = in_flight or InFlight()
        self.notifier = notifier or Notifier(service.store, service.settings)
        self.capture_domain = service.settings.capture_domain

    @property
    def max_recipients(self) -> int:
        return self.service.settings.max_recipients  # read live: SIGHUP may change it

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if self.in_flight.draining:
            return replies.SHUTTING_DOWN
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        envelope.capture_targets = []
        envelope.capture_keys = set()  # address_key of each capture, once (one per address)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if self.in_flight.draining:
            return replies.SHUTTING_DOWN
        accepted = getattr(envelope, "rcpt_count", 0)
        if accepted >= self.max_recipients:
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
        envelope.rcpt_count = accepted + 1
        key = address_key(address)
        if self.protocol == "smtp" and key in envelope.capture_keys:
            # One capture per address however often it is named (LMTP owes a reply for each).
            return replies.RCPT_OK
        envelope.capture_keys.add(key)
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
            evidence: dict[int, AuthEvidence | None] | None = {}
            # One id per recipient, chosen now: in its log lines, its reply and its event.
            event_ids = [new_id("evt") for _ in targets]
            for index, (rcpt, target) in enumerate(zip(envelope.rcpt_tos, targets, strict=True)):
                message_envelope = Envelope(
                    mail_from=clean_text(envelope.mail_from or ""),
                    rcpt=rcpt,
                    protocol=self.protocol,
                    received_at=received_at,
                    client_ip=client_ip(session),
                    helo=session.host_name or "",
                )
                if index == 0:  # one sender-authentication check whatever the recipients
                    with bound_contextvars(event_id=event_ids[0], event_ids=event_ids):
                        evidence = await self._evidence(raw, message_envelope, targets)
                if evidence is None:
                    answers.append(replies.TEMPORARY_FAILURE)
                    continue
                found, event_id = evidence.get(target.account_id), event_ids[index]
                with bound_contextvars(event_id=event_id):
                    answers.append(
                        await self._capture_one(raw, message_envelope, target, found, event_id)
                    )
        finally:
            self.in_flight.sessions.discard(server)
        if self.protocol == "lmtp":
            for answer in answers:
                metrics.REPLIES.labels(answer[:3]).inc()
            return "\r\n".join(answers)  # LMTP: one reply per accepted recipient, in order
        reply = replies.combine(answers)
        metrics.REPLIES.labels(reply[:3]).inc()
        return reply

    async def _evidence(
        self, raw: bytes, envelope: Envelope, targets: list[CaptureTarget]
    ) -> dict[int, AuthEvidence | None] | None:
        """Evidence per account; None when the accounts' settings could not be read (→ 451)."""
        try:
            return await self.service.gather_evidence(raw, envelope, targets)
        except Exception as error:
            log.warning("authentication_unavailable", error=type(error).__name__, exc_info=True)
            return None

    async def _capture_one(
        self,
        raw: bytes,
        envelope: Envelope,
        target: CaptureTarget,
        evidence: AuthEvidence | None,
        event_id: str,
    ) -> str:
        try:
            outcome = await self.service.capture_async(
                raw, envelope, target, evidence=evidence, event_id=event_id
            )
        except StoreUnavailable as error:
            log.warning("store_unavailable", during="DATA", error=str(error)[:200])
            return replies.TEMPORARY_FAILURE
        except Exception:
            # Not even the quarantine took it (disk full?): the client must keep the message.
            log.error("capture_failed", account=target.account_slug, exc_info=True)
            return replies.INTERNAL_ERROR
        self.notifier.after_capture(raw, envelope, target, outcome)  # background, after commit
        return outcome.reply

    async def handle_PROXY(self, server: Any, session: Any, envelope: Any, proxy: Any) -> bool:
        # Reached only for configured load balancers (see smtp/server.py).
        valid = bool(proxy and proxy.valid and proxy.src_addr)
        if not valid:
            log.warning("proxy_header_invalid", peer=str(session.peer))
        return valid

    async def handle_exception(self, error: Exception) -> str:
        # aiosmtpd's default would send the exception text to the client.
        log.error("smtp_session_error", error=type(error).__name__, exc_info=error)
        return replies.INTERNAL_ERROR
