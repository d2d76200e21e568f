"""Queries behind the raw archive: archived events to replay, keys still referenced, and the
deletion `replay --rebuild` runs in the same transaction as the new engagement."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete
from sqlmodel import Session, col, select

from capture_server.store.models import CaptureEvent, Engagement, ThreadMessage
from capture_server.store.repositories import Store
from capture_server.store.rules import _delete_engagements

_CHUNK = 500  # keys per IN (...) query: well under every database's parameter limit


@dataclass(frozen=True)
class ArchivedEvent:
    event_id: str
    account_id: int
    received_at: datetime
    protocol: str
    mail_from: str
    rcpt: str
    kind: str
    archive_key: str
    engagement_id: str | None
    authentication_json: str | None


def archived_events(store: Store, slug: str, since: datetime) -> list[ArchivedEvent]:
    """The account's events with an archived message received since `since`, oldest first.

    One per (message, capture address): a duplicate delivery is the same message again.
    """
    with store._read() as session:
        account = store._account(session, slug)
        rows = session.exec(
            select(CaptureEvent)
            .where(
                CaptureEvent.account_id == account.id,
                col(CaptureEvent.archive_key).is_not(None),
                col(CaptureEvent.received_at) >= since,
            )
            .order_by(col(CaptureEvent.received_at), col(CaptureEvent.id))
        ).all()
    found: dict[tuple[str, str], ArchivedEvent] = {}
    for row in rows:
        assert row.archive_key is not None and row.account_id is not None
        key = (row.archive_key, row.rcpt.lower())
        earlier = found.get(key)
        if earlier is not None:
            if earlier.engagement_id is None and row.engagement_id is not None:
                # A later delivery found the engagement (a duplicate): rebuild that one.
                found[key] = ArchivedEvent(**{**earlier.__dict__,
                                              "engagement_id": row.engagement_id})  # fmt: skip
            continue
        found[key] = ArchivedEvent(
            event_id=row.id,
            account_id=row.account_id,
            received_at=row.received_at,
            protocol=row.protocol,
            mail_from=row.mail_from,
            rcpt=row.rcpt,
            kind=row.kind or "bcc",
            archive_key=row.archive_key,
            engagement_id=row.engagement_id,
            authentication_json=row.authentication_json,
        )
    return list(found.values())


def keys_referenced_since(store: Store, keys: Iterable[str], since: datetime) -> set[str]:
    """Which of these archive keys a capture event received since `since` refers to."""
    wanted = list(keys)
    referenced: set[str] = set()
    with store._read() as session:
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            rows = session.exec(
                select(CaptureEvent.archive_key).where(
                    col(CaptureEvent.archive_key).in_(chunk),
                    col(CaptureEvent.received_at) >= since,
                )
            ).all()
            referenced.update(key for key in rows if key is not None)
    return referenced


def engagement_exists(store: Store, account_id: int, engagement_id: str) -> bool:
    with store._read() as session:
        row = session.get(Engagement, engagement_id)
        return row is not None and row.account_id == account_id


def deleting_engagement(account_id: int, engagement_id: str) -> Callable[[Session], None]:
    """A Store.record `prepare` step: delete the engagement and what links to it, so the
    replayed message creates it again under the current rules in the same transaction.

    Contacts and companies it created stay: they are CRM records people may have edited.
    """

    def prepare(session: Session) -> None:
        row = session.get(Engagement, engagement_id)
        if row is None or row.account_id != account_id:
            return  # deleted meanwhile (a never-log purge, an earlier rebuild of a duplicate)
        session.execute(
            delete(ThreadMessage).where(
                col(ThreadMessage.account_id) == account_id,
                col(ThreadMessage.engagement_id) == engagement_id,
            )
        )
        _delete_engagements(session, [engagement_id])

    return prepare
