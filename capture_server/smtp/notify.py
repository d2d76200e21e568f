"""Sending notices: after the store commit, in the background, never in the SMTP reply's way."""

from __future__ import annotations

import asyncio

import aiosmtplib

from capture_server.capture import Outcome
from capture_server.config import Settings
from capture_server.logging import get_logger
from capture_server.notices import NOTICE_REASONS, Notice, plan_notice, render
from capture_server.pipeline.message import CapturedMessage, CaptureTarget, Envelope
from capture_server.store.repositories import Store
from capture_server.store.rules import claim_notice

log = get_logger("notices")


class Notifier:
    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.use_settings(settings)
        self.tasks: set[asyncio.Task[None]] = set()

    def use_settings(self, settings: Settings) -> None:
        """Swap in reloaded settings (SIGHUP); notices already sending keep the old ones."""
        self.settings = settings
        self.enabled = bool(settings.notice_relay_host)
        self.sender = settings.notice_from or f"capture-notices@{settings.capture_domain}"

    def after_capture(
        self, raw: bytes, envelope: Envelope, target: CaptureTarget, outcome: Outcome
    ) -> None:
        """Called on the event loop once the outcome is committed; returns at once."""
        decision = outcome.decision
        if not self.enabled or decision is None or decision.reason not in NOTICE_REASONS:
            return
        message = CapturedMessage(envelope, target, raw)
        task = asyncio.create_task(self._notify(message, outcome))
        self.tasks.add(task)  # a reference, so the task is not collected mid-flight
        task.add_done_callback(self.tasks.discard)

    async def _notify(self, message: CapturedMessage, outcome: Outcome) -> None:
        account = message.target.account_slug
        try:
            notice = await asyncio.to_thread(self._prepare, message, outcome)
            if notice is None:
                return
            await aiosmtplib.send(
                render(notice, self.sender, self.settings.hostname),
                hostname=self.settings.notice_relay_host,
                port=self.settings.notice_relay_port,
                sender="",  # null return path: a notice never bounces back into a loop
                recipients=[notice.to],
                timeout=self.settings.notice_timeout_seconds,
                start_tls=False,
            )
            log.info(
                "notice_sent", account=account, user_id=notice.user_id, reason=notice.reason.value
            )
        except Exception as error:
            log.warning(
                "notice_failed", account=account, event_id=outcome.event_id,
                error=type(error).__name__, detail=str(error)[:200],
            )  # fmt: skip

    def _prepare(self, message: CapturedMessage, outcome: Outcome) -> Notice | None:
        assert outcome.decision is not None and outcome.event_id is not None
        snapshot = self.store.snapshot(message.target.account_id)
        notice, why = plan_notice(outcome.decision, message, snapshot, outcome.event_id)
        refused = why if notice is None else None
        if notice is not None:
            refused = claim_notice(
                self.store,
                notice.account_id,
                notice.user_id,
                notice.message_key,
                notice.reason.value,
                per_hour=self.settings.notice_max_per_hour,
            )
        if refused is not None:
            log.info(
                "notice_skipped", account=message.target.account_slug,
                event_id=outcome.event_id, why=refused,
            )  # fmt: skip
            return None
        return notice

    async def drain(self, timeout: float) -> None:
        """On shutdown: give notices on their way a bounded time to leave."""
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=timeout)
