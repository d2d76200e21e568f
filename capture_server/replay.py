"""Replay archived messages through the current rules (`replay --since DATE --account SLUG`).

Each archived message runs the whole pipeline again and is recorded with a new capture event
(protocol "replay", the original receipt time). Without --rebuild the store's dedupe keeps
this idempotent: a message already logged stays as it is (`duplicate`), and one the old rules
ignored is logged now if the new rules allow it. With --rebuild the engagement an archived
message made is deleted and created again under the new rules in one transaction, so a rule
change reaches the engagements already written (a new id; a message the new rules no longer
log leaves no engagement; contacts and companies are kept).

Sender authentication is judged on the evidence recorded at receipt: DNS at replay time says
nothing about the day the message came, and the client's address is not kept.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from capture_server.archive import RawArchive
from capture_server.authentication import AuthenticationResults, MethodResult, StructuralProblem
from capture_server.capture import CaptureService
from capture_server.pipeline.message import (
    Action,
    AuthEvidence,
    CapturedMessage,
    CaptureTarget,
    Envelope,
    Kind,
)
from capture_server.smtp import replies
from capture_server.store.archived import ArchivedEvent, deleting_engagement, engagement_exists
from capture_server.store.repositories import new_id


@dataclass(frozen=True)
class Replayed:
    archived: ArchivedEvent
    decision: str  # log | ignore | reject | defer | missing
    reason: str
    reply: str
    engagement_id: str | None
    event_id: str | None  # the replay's own capture event; None when nothing was recorded
    deleted_engagement_id: str | None  # --rebuild: the engagement it replaced

    def as_dict(self) -> dict[str, Any]:
        return {
            "archived_event_id": self.archived.event_id,
            "archive_key": self.archived.archive_key,
            "received_at": self.archived.received_at.isoformat(),
            "decision": self.decision,
            "reason": self.reason,
            "smtp_reply": self.reply,
            "engagement_id": self.engagement_id,
            "event_id": self.event_id,
            "deleted_engagement_id": self.deleted_engagement_id,
        }


def replay_archived(
    service: CaptureService,
    archive: RawArchive,
    archived: ArchivedEvent,
    slug: str,
    *,
    rebuild: bool,
) -> Replayed:
    """Run one archived message again and record it; raises StoreUnavailable on a fault."""
    try:
        raw = archive.get(archived.archive_key)
    except KeyError:
        return Replayed(archived, "missing", "archive_purged", "", None, None, None)
    envelope = Envelope(archived.mail_from, archived.rcpt, "replay", archived.received_at)
    target = CaptureTarget(archived.account_id, slug, Kind(archived.kind))
    message = CapturedMessage(envelope, target, raw, recorded_evidence(archived))
    decision = service.decide(message)
    if decision.action is Action.DEFER:
        # Nothing recorded and nothing deleted: the old engagement is better than none.
        reply = replies.for_decision(decision, None, "")
        return Replayed(archived, decision.action.value, decision.reason.value, reply,
                        None, None, None)  # fmt: skip
    doomed = archived.engagement_id if rebuild else None
    if doomed and not engagement_exists(service.store, archived.account_id, doomed):
        doomed = None
    event_id = new_id("evt")
    result = service.store.record(
        message,
        decision,
        event_id,
        replies.for_decision,
        archive_key=archived.archive_key,
        prepare=deleting_engagement(archived.account_id, doomed) if doomed else None,
    )
    reply = result.smtp_reply
    return Replayed(
        archived,
        result.decision.action.value,
        result.decision.reason.value,
        reply,
        result.engagement_id,
        event_id,
        doomed,
    )


def recorded_evidence(archived: ArchivedEvent) -> AuthEvidence | None:
    """The authentication evidence the capture event recorded (AuthReport.as_dict)."""
    if not archived.authentication_json:
        return None
    report = json.loads(archived.authentication_json)
    found = report.get("results")
    results = None
    if isinstance(found, dict):
        results = AuthenticationResults(
            authserv_id=str(found.get("authserv_id") or ""),
            methods=tuple(
                MethodResult(
                    method=str(m["method"]),
                    result=str(m["result"]),
                    domain=m.get("domain"),
                    detail=str(m.get("detail") or ""),
                    selector=m.get("selector"),
                    identity=m.get("identity"),
                )
                for m in found.get("methods") or ()
            ),
            from_domain=found.get("from_domain"),
            dmarc_policy=found.get("dmarc_policy"),
            aligned=bool(found.get("aligned")),
            temporary_error=bool(found.get("temporary_error")),
            source=str(found.get("source") or ""),
            from_address=found.get("from_address"),
            notes=tuple(found.get("notes") or ()),
        )
    structure = tuple(
        StructuralProblem(str(p["code"]), str(p.get("detail") or ""))
        for p in report.get("structure") or ()
    )
    if results is None and not structure:
        return None  # auth_mode was off at receipt: nothing was gathered
    return AuthEvidence(results, structure)
