"""Paged reads of the HTTP API: keyset paging, within one account, in the order rows become
visible: on (sync_seq, created_at, id) (events: received_at for created_at).

created_at is the application's clock, read before the commit: on PostgreSQL a row with an
earlier created_at can commit after a client paged past it, so paging on it lost rows.
sync_seq (migration 0012) is the writing transaction's id on PostgreSQL, and only rows older
than every transaction still in progress in the database are listed; on SQLite, where
writers take turns, it is a counter the database numbers rows with. Either way a row that
commits later comes after every position a cursor can name, so a client that keeps following
next_cursor sees every row exactly once. next_cursor is always given: at the end it names
where to poll again.

A cursor is bound to what it was handed out for: its listing, and a short hash of the account
and the filters (scope). Positions of one listing are no positions of the same listing with
other filters: following a cursor with other filters silently skipped rows, so it is refused.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, String, literal, literal_column, or_, tuple_
from sqlalchemy.sql.expression import ColumnClause
from sqlalchemy.types import TypeEngine
from sqlmodel import Session, col, select

from capture_server.pipeline.canonical import canonical_address
from capture_server.store.models import (
    CaptureEvent,
    Company,
    Contact,
    ContactAddress,
    Engagement,
    EngagementContact,
    UTCDateTime,
)
from capture_server.store.operations import event_json
from capture_server.store.repositories import Store, contact_json

MAX_LIMIT = 500
CURSOR_VERSION = 3  # 3: bound to the account and filters (scope); 2 was not
# Rows of transactions below this can no longer commit: the oldest transaction still in
# progress in *this* database, else the snapshot's xmax. Transaction ids are the whole
# server's, so pg_snapshot_xmin alone let a write transaction left open in any other database
# of a shared server hold every listing back. A transaction counts as another database's only
# while its id's lock is seen held by a backend of that database; one that ended meanwhile,
# or a prepared one, still holds the listing back (the safe side) until the next request.
_PG_SETTLED: ColumnClause[int] = literal_column(
    """COALESCE(
    (SELECT min(running) FROM pg_snapshot_xip(pg_current_snapshot()) AS running
     WHERE NOT EXISTS (
         SELECT 1 FROM pg_locks AS held JOIN pg_stat_activity AS backend ON backend.pid = held.pid
         WHERE held.locktype = 'transactionid' AND held.granted AND held.mode = 'ExclusiveLock'
           AND held.transactionid::text::bigint = running::text::bigint % 4294967296
           AND backend.datid <> (SELECT oid FROM pg_database WHERE datname = current_database())
     )),
    pg_snapshot_xmax(pg_current_snapshot()))::text::bigint""",
    BigInteger(),
)


class BadCursor(ValueError):
    """A cursor this server did not hand out (or of another listing, account or filters)."""


@dataclass(frozen=True)
class Position:
    """A row's place in a listing: (sync_seq, created_at or received_at, id)."""

    seq: int
    when: datetime
    row_id: str | int


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    next_cursor: str  # always: after the last item, or where this page started when empty
    has_more: bool  # False: nothing more now; poll again later with next_cursor


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


def cursor_scope(account_id: int, filters: dict[str, Any]) -> str:
    """A short hash of the account and a canonical form of the filters a listing was asked
    with: equal filters (an address in other case, an instant in another zone, an empty value
    and none) give the same scope."""
    canonical: dict[str, Any] = {}
    for name, value in filters.items():
        if isinstance(value, datetime):
            value = value.astimezone(UTC).isoformat() if value.tzinfo else value.isoformat()
        elif isinstance(value, str):
            value = value.strip().lower() if name == "contact" else value
        canonical[name] = value or None
    form = json.dumps([account_id, canonical], sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(form.encode()).digest()[:9]
    return base64.urlsafe_b64encode(digest).decode()


def encode_cursor(listing: str, position: Position | None, *, scope: str) -> str:
    """[3, listing, scope, seq, when, id]; [3, listing, scope] before the first row."""
    body: list[Any] = [CURSOR_VERSION, listing, scope]
    if position is not None:
        when = position.when.astimezone(UTC).isoformat()
        body += [position.seq, when, position.row_id]
    raw = json.dumps(body, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(listing: str, cursor: str, id_type: type[str | int] = str, *, scope: str
                  ) -> Position | None:  # fmt: skip
    """The position a cursor names (None: the start); BadCursor when it names none of this
    listing's, or was handed out for another account or other filters (scope)."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        body = json.loads(raw)
    except ValueError as error:  # binascii.Error and JSONDecodeError are ValueErrors
        raise BadCursor("cursor is not one this server handed out") from error
    if not isinstance(body, list) or not body:
        raise BadCursor("cursor is not one this server handed out")
    if isinstance(body[0], str) and len(body) == 3:
        raise BadCursor(
            "cursor is from an earlier version of this API, which paged by created_at: "
            "start again without a cursor (since= skips what you already have)"
        )
    if body[0] == 2 and len(body) in (2, 5):
        raise BadCursor(
            "cursor is from an earlier version of this API, not bound to its filters: "
            "start again without a cursor (since= skips what you already have)"
        )
    if body[0] != CURSOR_VERSION or len(body) not in (3, 6):
        raise BadCursor("cursor is not one this server handed out")
    if body[1] != listing:
        raise BadCursor("cursor is not one of this listing")
    if body[2] != scope:
        raise BadCursor(
            "cursor was handed out for other filters (or another account): start again "
            "without a cursor, or send the same filters"
        )
    if len(body) == 3:
        return None
    _, _, _, seq, when, row_id = body
    try:
        moment = datetime.fromisoformat(when)
    except (ValueError, TypeError) as error:
        raise BadCursor("cursor is not one this server handed out") from error
    if type(seq) is not int or moment.tzinfo is None or type(row_id) is not id_type:
        raise BadCursor("cursor is not one of this listing")
    return Position(seq, moment, row_id)


def _after(store: Store, seq: Any, when: Any, row_id: Any, position: Position | None
           ) -> list[Any]:  # fmt: skip
    """Rows visible for good, after position in (seq, when, id) order."""
    conditions = [seq.is_not(None)]
    if store.engine.dialect.name == "postgresql":
        conditions.append(seq < _PG_SETTLED)
    if position is not None:
        id_type: TypeEngine[Any] = String() if isinstance(position.row_id, str) else BigInteger()
        conditions.append(
            tuple_(seq, when, row_id)
            > tuple_(
                literal(position.seq, BigInteger()),
                literal(position.when, UTCDateTime()),
                literal(position.row_id, id_type),
            )
        )
    return conditions


def _paged(session: Session, query: Any, limit: int) -> tuple[list[Any], bool]:
    rows = list(session.exec(query.limit(limit + 1)).all())
    return rows[:limit], len(rows) > limit


def _page(listing: str, scope: str, items: list[dict[str, Any]], last: Position | None,
          start: Position | None, more: bool) -> Page:  # fmt: skip
    cursor = encode_cursor(listing, last if last is not None else start, scope=scope)
    return Page(items, cursor, more)


def engagements_page(store: Store, account_id: int, wanted: EngagementFilter, limit: int,
                     cursor: str | None) -> Page:  # fmt: skip
    scope = cursor_scope(account_id, asdict(wanted))
    start = decode_cursor("engagements", cursor, scope=scope) if cursor else None
    seq, created, row_id = col(Engagement.sync_seq), col(Engagement.created_at), col(Engagement.id)
    query = select(Engagement).where(
        Engagement.account_id == account_id, *_after(store, seq, created, row_id, start)
    )
    if wanted.since is not None:
        query = query.where(created >= wanted.since)
    if wanted.thread_id:
        query = query.where(Engagement.thread_id == wanted.thread_id)
    if wanted.kind:
        query = query.where(Engagement.kind == wanted.kind)
    if wanted.contact:
        address = canonical_address(wanted.contact)
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
        rows, more = _paged(session, query.order_by(seq, created, row_id), limit)
        items = [store._engagement_json(session, row) for row in rows]
    last = _position(rows[-1].sync_seq, rows[-1].created_at, rows[-1].id) if rows else None
    return _page("engagements", scope, items, last, start, more)


def _position(seq: int | None, when: datetime, row_id: str | int | None) -> Position:
    assert seq is not None and row_id is not None  # listed rows have both
    return Position(seq, when, row_id)


def engagement(store: Store, account_id: int, engagement_id: str) -> dict[str, Any] | None:
    with store._read() as session:
        row = session.get(Engagement, engagement_id)
        if row is None or row.account_id != account_id:
            return None  # another account's id looks exactly like one that does not exist
        return store._engagement_json(session, row)


def contacts_page(store: Store, account_id: int, since: datetime | None, limit: int,
                  cursor: str | None) -> Page:  # fmt: skip
    scope = cursor_scope(account_id, {"since": since})
    start = decode_cursor("contacts", cursor, int, scope=scope) if cursor else None
    seq, created, row_id = col(Contact.sync_seq), col(Contact.created_at), col(Contact.id)
    query = (
        select(Contact, Company.domain)
        .join(Company, col(Company.id) == Contact.company_id, isouter=True)
        .where(
            Contact.account_id == account_id,
            col(Contact.deleted_at).is_(None),
            *_after(store, seq, created, row_id, start),
        )
    )
    if since is not None:
        query = query.where(created >= since)
    with store._read() as session:
        rows, more = _paged(session, query.order_by(seq, created, row_id), limit)
        items = [contact_json(session, contact, company) for contact, company in rows]
    final = rows[-1][0] if rows else None
    last = _position(final.sync_seq, final.created_at, final.id) if final else None
    return _page("contacts", scope, items, last, start, more)


def events_page(store: Store, account_id: int, wanted: EventFilter, limit: int,
                cursor: str | None) -> Page:  # fmt: skip
    scope = cursor_scope(account_id, asdict(wanted))
    start = decode_cursor("events", cursor, scope=scope) if cursor else None
    seq, received = col(CaptureEvent.sync_seq), col(CaptureEvent.received_at)
    row_id = col(CaptureEvent.id)
    query = select(CaptureEvent).where(
        CaptureEvent.account_id == account_id, *_after(store, seq, received, row_id, start)
    )
    if wanted.since is not None:
        query = query.where(received >= wanted.since)
    if wanted.reason:
        query = query.where(CaptureEvent.reason == wanted.reason)
    if wanted.decision:
        query = query.where(CaptureEvent.decision == wanted.decision)
    with store._read() as session:
        rows, more = _paged(session, query.order_by(seq, received, row_id), limit)
        items = [event_json(row) for row in rows]
    last = _position(rows[-1].sync_seq, rows[-1].received_at, rows[-1].id) if rows else None
    return _page("events", scope, items, last, start, more)
