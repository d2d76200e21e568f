"""One message through the whole path: read the store, run the pipeline, write, reply.

The SMTP handler, `ingest` and `dry-run` all come through here, so they decide alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from email import policy
from email.parser import BytesHeaderParser

from capture_server.config import Settings
from capture_server.logging import get_logger
from capture_server.pipeline import STAGES, Stage, run_pipeline
from capture_server.pipeline.message import (
    AccountRules,
    CapturedMessage,
    CaptureTarget,
    Decision,
    Envelope,
)
from capture_server.pipeline.parse import message_ids
from capture_server.smtp import replies
from capture_server.spool import Quarantine
from capture_server.store.repositories import Store, StoreUnavailable, new_id

log = get_logger("capture")


@dataclass(frozen=True)
class Outcome:
    reply: str
    event_id: str | None
    engagement_id: str | None
    decision: Decision | None  # None when the message was quarantined


class CaptureService:
    def __init__(
        self, store: Store, settings: Settings, stages: Sequence[Stage] = STAGES
    ) -> None:
        self.store = store
        self.stages = tuple(stages)
        self.settings = settings
        self.quarantine = Quarantine(settings.quarantine_dir)
        self.defaults = AccountRules(
            max_body_bytes=settings.max_body_bytes,
            max_attachment_bytes=settings.max_attachment_bytes,
        )

    def decide(self, message: CapturedMessage) -> Decision:
        """Run the pipeline without writing anything (dry-run, and the first half of capture)."""
        snapshot = self.store.snapshot(
            message.target.account_id, _thread_ids(message.raw), self.defaults
        )
        return run_pipeline(message, snapshot, self.stages)

    def capture(
        self,
        raw: bytes,
        envelope: Envelope,
        target: CaptureTarget,
        *,
        quarantine_on_crash: bool = True,
    ) -> Outcome:
        """Decide and record; raises StoreUnavailable on a transient store fault (→ 451).

        A pipeline crash holds the message in the quarantine (replay raises instead).
        """
        message = CapturedMessage(envelope, target, raw)
        try:
            decision = self.decide(message)
        except StoreUnavailable:
            raise
        except Exception as error:
            if not quarantine_on_crash:
                raise
            quarantine_id = self.quarantine.put(envelope, raw, f"{type(error).__name__}: {error}")
            log.error(
                "pipeline_crashed",
                quarantine_id=quarantine_id,
                error=type(error).__name__,
                account=target.account_slug,
                exc_info=True,
            )
            return Outcome(replies.quarantined(quarantine_id), None, None, None)
        event_id = new_id("evt")
        result = self.store.record(message, decision, event_id, replies.for_decision)
        reply = replies.for_decision(result.decision, result.engagement_id, event_id)
        log.info(
            "message_captured",
            account=target.account_slug,
            kind=target.kind.value,
            decision=result.decision.action.value,
            reason=result.decision.reason.value,
            event_id=event_id,
            engagement_id=result.engagement_id,
            mail_from=envelope.mail_from,
        )
        return Outcome(reply, event_id, result.engagement_id, result.decision)


def _thread_ids(raw: bytes) -> list[str]:
    """In-Reply-To and References, read from the header section alone, for the thread lookup."""
    headers = BytesHeaderParser(policy=policy.compat32).parsebytes(raw)
    found: list[str] = []
    for name in ("in-reply-to", "references"):
        for value in headers.get_all(name, []):
            found.extend(message_ids(str(value)))
    return found
