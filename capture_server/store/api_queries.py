"""Paged reads of the HTTP API: keyset paging on (created_at, id) within one account.

A cursor names the last row a page returned, so rows written while a client walks the pages
neither shift nor repeat what it sees; they come after, in later pages.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, or_
from sqlmodel import Session, col, select

from capture_server.store.models import (
    CaptureEvent,
    Company,
    Contact,
    ContactAddress,
    Engagement,
    EngagementContact,
)
from capture_server.store.operations import event_json
from capture_server.store.repositories import Store, contact_json

MAX_LIMIT = 500


class BadCursor(ValueError):
    """A cursor this server did not hand out (or of another listing)."""


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    next_cursor: str | None  # None: nothing more now


@dataclass(frozen=True)
class EngagementFilter:
    since: datetime | None = None  # logged (created) at or after
    thread_id: str | None = None
    contact: str | None = None  # an address of a contact of the engagement
    kind: str | None = None


@dataclass(frozen=True)
class EventFilter:
    since: datetime | None = None  # received at or after
    reason: str | None = None
    decision: str | None = None


def encode_cursor(listing: str, when: datetime, row_id: str | int) -> str:
    raw = json.dumps([listing, when.astimezone(UTC).isoformat(), row_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(
    listing: str, cursor: str, id_type: type[str | int] = str
) -> tuple[datetime, Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        name, when, row_id = json.loads(raw)
        moment = datetime.fromisoformat(when)
    except (ValueError, TypeError) as error:
        raise BadCursor("cursor is not one this server handed out") from error
    if name != listing or moment.tzinfo is None or type(row_id) is not id_type:
        raise BadCursor("cursor is not one of this listing")
    return moment, row_id


def _after(created: Any, row_id: Any, cursor: tuple[datetime, Any] | None) -> Any:
    if cursor is None:
        return True
    moment, last_id = cursor
    return or_(created > moment, and_(created == moment, row_id > last_id))


def _paged(session: Session, query: Any, limit: int) -> tuple[list[Any], bool]:
    rows = list(session.exec(query.limit(limit + 1)).all())
    return rows[:limit], len(rows) > limit


def engagements_page(store: Store, account_id: int, wanted: EngagementFilter, limit: int,
                     cursor: str | None) -> Page:  # fmt: skip
    after = decode_cursor("engagements", cursor) if cursor else None
    created, row_id = col(Engagement.created_at), col(Engagement.id)
    query = select(Engagement).where(
        Engagement.account_id == account_id, _after(created, row_id, after)
    )
    if wanted.since is not None:
        query = query.where(created >= wanted.since)
    if wanted.thread_id:
        query = query.where(Engagement.thread_id == wanted.thread_id)
    if wanted.kind:
        query = query.where(Engagement.kind == wanted.kind)
    if wanted.contact:
        address = wanted.contact.strip().lower()
        by_primary = select(Contact.id).where(
            Contact.account_id == account_id, Contact.primary_address == address
        )
        by_extra = select(ContactAddress.contact_id).where(
            ContactAddress.account_id == account_id, ContactAddress.address == address
        )
        linked = select(EngagementContact.engagement_id).where(
            or_(
                col(EngagementContact.contact_id).in_(by_primary),
                col(EngagementContact.contact_id).in_(by_extra),
            )
        )
        query = query.where(row_id.in_(linked))
    with store._read() as session:
        rows, more = _paged(session, query.order_by(created, row_id), limit)
        items = [store._engagement_json(session, row) for row in rows]
    last = rows[-1] if rows and more else None
    return Page(items, encode_cursor("engagements", last.created_at, last.id) if last else None)


def engagement(store: Store, account_id: int, engagement_id: str) -> dict[str, Any] | None:
    with store._read() as session:
        row = session.get(Engagement, engagement_id)
        if row is None or row.account_id != account_id:
            return None  # another account's id looks exactly like one that does not exist
        return store._engagement_json(session, row)


def contacts_page(store: Store, account_id: int, since: datetime | None, limit: int,
                  cursor: str | None) -> Page:  # fmt: skip
    after = decode_cursor("contacts", cursor, int) if cursor else None
    created, row_id = col(Contact.created_at), col(Contact.id)
    query = (
        select(Contact, Company.domain)
        .join(Company, col(Company.id) == Contact.company_id, isouter=True)
        .where(
            Contact.account_id == account_id,
            col(Contact.deleted_at).is_(None),
            _after(created, row_id, after),
        )
    )
    if since is not None:
        query = query.where(created >= since)
    with store._read() as session:
        rows, more = _paged(session, query.order_by(created, row_id), limit)
        items = [contact_json(session, contact, company) for contact, company in rows]
    last = rows[-1][0] if rows and more else None
    return Page(items, encode_cursor("contacts", last.created_at, last.id) if last else None)


def events_page(store: Store, account_id: int, wanted: EventFilter, limit: int,
                cursor: str | None) -> Page:  # fmt: skip
    after = decode_cursor("events", cursor) if cursor else None
    received, row_id = col(CaptureEvent.received_at), col(CaptureEvent.id)
    query = select(CaptureEvent).where(
        CaptureEvent.account_id == account_id, _after(received, row_id, after)
    )
    if wanted.since is not None:
        query = query.where(received >= wanted.since)
    if wanted.reason:
        query = query.where(CaptureEvent.reason == wanted.reason)
    if wanted.decision:
        query = query.where(CaptureEvent.decision == wanted.decision)
    with store._read() as session:
        rows, more = _paged(session, query.order_by(received, row_id), limit)
        items = [event_json(row) for row in rows]
    last = rows[-1] if rows and more else None
    return Page(items, encode_cursor("events", last.received_at, last.id) if last else None)
