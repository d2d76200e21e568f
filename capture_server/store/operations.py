"""Queries of the admin commands: accounts, address rotation, contact merge, events, stats."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, or_
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from capture_server.archive import raw_key
from capture_server.capture_addresses import capture_address
from capture_server.pipeline.message import Kind
from capture_server.store import profiles
from capture_server.store.capture_sql import contact_ids
from capture_server.store.models import (
    Account,
    AccountDomain,
    CaptureAddress,
    CaptureEvent,
    Company,
    Contact,
    ContactAddress,
    DealContact,
    Engagement,
    EngagementContact,
    ThreadMessage,
    User,
    utcnow,
)
from capture_server.store.repositories import (
    Store,
    StoreError,
    _clean_address,
    _insert_ignore,
    find_contact,
)
from capture_server.store.rules import users

# -- accounts ---------------------------------------------------------------------------------


def _count(session: Session, model: Any, *where: Any) -> int:
    return int(session.exec(select(func.count()).select_from(model).where(*where)).one())


def _domains(session: Session, account_id: int | None) -> list[str]:
    return list(
        session.exec(
            select(AccountDomain.domain)
            .where(AccountDomain.account_id == account_id)
            .order_by(col(AccountDomain.domain))
        )
    )


def _addresses(session: Session, account_id: int | None, retired: bool) -> list[CaptureAddress]:
    retired_at = col(CaptureAddress.retired_at)
    return list(
        session.exec(
            select(CaptureAddress)
            .where(
                CaptureAddress.account_id == account_id,
                retired_at.is_not(None) if retired else retired_at.is_(None),
            )
            .order_by(col(CaptureAddress.id))
        )
    )


def _summary(session: Session, account: Account) -> dict[str, Any]:
    current = {f"{row.kind}_address": row.address for row in _addresses(session, account.id, False)}
    return {
        "slug": account.slug,
        "name": account.name,
        "domains": _domains(session, account.id),
        "created_at": account.created_at.isoformat(),
        **{key: current.get(key) for key in ("bcc_address", "forward_address", "reply_address")},
        "users": _count(session, User, User.account_id == account.id),
        "contacts": _count(
            session, Contact, Contact.account_id == account.id, col(Contact.deleted_at).is_(None)
        ),
        "engagements": _count(session, Engagement, Engagement.account_id == account.id),
    }


def accounts(store: Store) -> list[dict[str, Any]]:
    with store._read() as session:
        rows = session.exec(select(Account).order_by(col(Account.slug))).all()
        return [_summary(session, account) for account in rows]


def account_detail(store: Store, slug: str) -> dict[str, Any]:
    with store._read() as session:
        account = store._account(session, slug)
        detail = _summary(session, account)
        detail["token_generation"] = account.token_generation
        detail["retired_addresses"] = [
            {
                "kind": row.kind,
                "address": row.address,
                "retired_at": row.retired_at.isoformat() if row.retired_at else None,
            }
            for row in _addresses(session, account.id, True)
        ]
    detail["user_list"] = users(store, slug)
    return detail


def rotate_addresses(
    store: Store, slug: str, kinds: Sequence[Kind], capture_domain: str, secret: str
) -> dict[str, Any]:
    """Retire the current address of each kind and issue one of a new token generation.

    The generation is account-wide and only grows, so every address ever issued is new.
    """
    now = utcnow()
    with store._write() as session:
        account = store._account(session, slug)
        assert account.id is not None
        account.token_generation += 1
        session.add(account)
        retired = []
        for kind in kinds:
            for row in _addresses(session, account.id, False):
                if row.kind == kind.value:
                    row.retired_at = now
                    session.add(row)
                    retired.append(row.address)
            address = capture_address(
                secret, account.slug, kind, account.token_generation, capture_domain
            )
            session.add(CaptureAddress(account_id=account.id, kind=kind.value, address=address))
        session.flush()
        current = {
            f"{row.kind}_address": row.address for row in _addresses(session, account.id, False)
        }
        return {
            "slug": account.slug,
            **{
                key: current.get(key) for key in ("bcc_address", "forward_address", "reply_address")
            },
            "retired": retired,
            "token_generation": account.token_generation,
        }


# -- contacts ---------------------------------------------------------------------------------


def merge_contacts(store: Store, slug: str, keep: str, merged: str) -> dict[str, Any]:
    """The merged contact's addresses, engagements and deals go to the kept one; it is removed.

    Engagements themselves (participants, from) are untouched: history stays as it was sent.
    """
    keep_address, merged_address = _clean_address(keep), _clean_address(merged)
    try:
        with store._write() as session:
            account = store._account(session, slug)
            assert account.id is not None
            kept = _contact(session, account, keep_address, keep)
            gone = _contact(session, account, merged_address, merged)
            if kept.id == gone.id:
                raise StoreError(f"{keep_address} and {merged_address} are the same contact")
            assert kept.id is not None and gone.id is not None
            extra = list(
                session.exec(
                    select(ContactAddress.address).where(ContactAddress.contact_id == gone.id)
                )
            )
            session.execute(delete(ContactAddress).where(col(ContactAddress.contact_id) == gone.id))
            for address in [gone.primary_address, *extra]:
                if address != kept.primary_address:
                    _insert_ignore(
                        session,
                        ContactAddress,
                        {"account_id": account.id, "contact_id": kept.id, "address": address},
                        ["contact_id", "address"],
                    )
            engagements = _move_links(session, EngagementContact, "engagement_id", gone.id, kept.id)
            deals = _move_links(session, DealContact, "deal_id", gone.id, kept.id)
            kept.name = kept.name or gone.name
            kept.company_id = kept.company_id or gone.company_id
            profiles.merge_profile(session, kept, gone)
            session.add(kept)
            session.flush()
            session.execute(delete(Contact).where(col(Contact.id) == gone.id))
            addresses = [
                kept.primary_address,
                *session.exec(
                    select(ContactAddress.address)
                    .where(ContactAddress.contact_id == kept.id)
                    .order_by(col(ContactAddress.id))
                ),
            ]
            return {
                "id": kept.id,
                "kept": kept.primary_address,
                "merged": gone.primary_address,
                "addresses": addresses,
                "engagements_moved": engagements,
                "deals_moved": deals,
            }
    except IntegrityError as error:  # a concurrent change to the same contacts
        raise StoreError("the contacts changed while merging; try again") from error


def _contact(session: Session, account: Account, address: str, written: str = "") -> Contact:
    """By its address; `written` as typed first: a contact stored in an IDN domain's xn--
    form beside its Unicode twin (migration 0015 leaves both) is reachable for a merge."""
    assert account.id is not None
    exact = written.strip().lower()
    contact_id = find_contact(session, account.id, exact) if exact not in ("", address) else None
    if contact_id is None:
        contact_id = find_contact(session, account.id, address)
    contact = session.get(Contact, contact_id) if contact_id is not None else None
    if contact is None:
        raise StoreError(f"no contact {address} in account {account.slug!r}")
    return contact


def _move_links(session: Session, model: Any, other: str, source: int, target: int) -> int:
    """Re-point link rows from source to target; a link target already has is dropped."""
    linked = list(session.exec(select(getattr(model, other)).where(model.contact_id == source)))
    for value in linked:
        _insert_ignore(session, model, {other: value, "contact_id": target}, [other, "contact_id"])
    session.execute(delete(model).where(col(model.contact_id) == source))
    return len(linked)


# -- events -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EventFilter:
    reason: str | None = None
    decision: str | None = None
    sender: str | None = None  # an address (envelope or From), or a domain
    since: datetime | None = None
    limit: int = 50


def event_json(event: CaptureEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "received_at": event.received_at.isoformat(),
        "protocol": event.protocol,
        "mail_from": event.mail_from,
        "from": event.header_from,
        "rcpt": event.rcpt,
        "kind": event.kind,
        "message_id": event.message_id,
        "received_message_id": event.header_message_id,
        "subject": event.subject,
        "decision": event.decision,
        "reason": event.reason,
        "smtp_reply": event.smtp_reply,
        "engagement_id": event.engagement_id,
        "trace": json.loads(event.trace_json),
        "warnings": json.loads(event.warnings_json),
        "authentication": (
            json.loads(event.authentication_json) if event.authentication_json else None
        ),
    }


def _sender_matches(sender: str) -> Any:
    wanted = sender.strip().lower()
    envelope = func.lower(CaptureEvent.mail_from)
    header = col(CaptureEvent.header_from)
    if "@" in wanted:
        return or_(envelope == wanted, header == wanted)
    # A domain: its subdomains too, as on the never-log list.
    domain = wanted.lstrip(".")
    patterns = [f"%@{domain}", f"%.{domain}"]
    return or_(*(column.like(p) for column in (envelope, header) for p in patterns))


def events(store: Store, slug: str, wanted: EventFilter) -> list[dict[str, Any]]:
    with store._read() as session:
        account = store._account(session, slug)
        query = select(CaptureEvent).where(CaptureEvent.account_id == account.id)
        if wanted.reason:
            query = query.where(CaptureEvent.reason == wanted.reason)
        if wanted.decision:
            query = query.where(CaptureEvent.decision == wanted.decision)
        if wanted.sender:
            query = query.where(_sender_matches(wanted.sender))
        if wanted.since:
            query = query.where(col(CaptureEvent.received_at) >= wanted.since)
        rows = session.exec(
            query.order_by(col(CaptureEvent.received_at).desc(), col(CaptureEvent.id).desc()).limit(
                wanted.limit
            )
        ).all()
        return [event_json(row) for row in rows]


def event_detail(store: Store, slug: str, event_id: str) -> dict[str, Any]:
    with store._read() as session:
        account = store._account(session, slug)
        event = session.get(CaptureEvent, event_id.strip())
        if event is None or event.account_id != account.id:
            raise StoreError(f"no event {event_id} in account {account.slug!r}")
        return event_json(event)


def already_stored(store: Store, account_id: int, message_id: str | None, raw: bytes = b""
                   ) -> bool:  # fmt: skip
    """Is this Message-ID an engagement (its own or a forward's) or an event of the account?
    Without a Message-ID: is there an event of these very bytes (its raw_sha256)?

    Events deferred with a temporary failure do not count: that message was never stored.
    """
    if not message_id:
        if not raw:
            return False
        with store._read() as session:
            return _stored_event(session, account_id, CaptureEvent.raw_sha256 == raw_key(raw))
    with store._read() as session:
        engagement = session.exec(
            select(Engagement.id).where(
                Engagement.account_id == account_id, Engagement.message_id == message_id
            )
        ).first()
        if engagement is not None:
            return True
        known = session.exec(
            select(ThreadMessage.engagement_id).where(
                ThreadMessage.account_id == account_id,
                ThreadMessage.message_id == message_id.lower(),
            )
        ).first()
        if known is not None:
            return True
        return _stored_event(session, account_id, CaptureEvent.header_message_id == message_id)


def _stored_event(session: Session, account_id: int, which: Any) -> bool:
    """Whether the account has an event of that message that was not deferred."""
    event = session.exec(
        select(CaptureEvent.id).where(
            CaptureEvent.account_id == account_id, which, CaptureEvent.decision != "defer"
        )
    ).first()
    return event is not None


def existing_contacts(store: Store, account_id: int, addresses: Sequence[str]) -> set[str]:
    """Which of these addresses are already contacts of the account (primary or not)."""
    with store._read() as session:
        return set(contact_ids(session.connection(), account_id, addresses))


# -- stats ------------------------------------------------------------------------------------


def stats(store: Store, slug: str, since: datetime | None, top: int = 10) -> dict[str, Any]:
    with store._read() as session:
        account = store._account(session, slug)
        in_events: list[Any] = [CaptureEvent.account_id == account.id]
        if since:
            in_events.append(col(CaptureEvent.received_at) >= since)

        def grouped(*columns: Any) -> list[Any]:
            return list(
                session.exec(
                    select(*columns, func.count())  # type: ignore[call-overload]
                    .where(*in_events)
                    .group_by(*columns)
                    .order_by(func.count().desc(), *columns)
                )
            )

        by_decision = {decision: n for decision, n in grouped(col(CaptureEvent.decision))}
        by_reason = [
            {"decision": decision, "reason": reason, "messages": n}
            for decision, reason, n in grouped(col(CaptureEvent.decision), col(CaptureEvent.reason))
        ]
        sender = func.coalesce(col(CaptureEvent.header_from), func.lower(CaptureEvent.mail_from))
        senders = session.exec(
            select(sender, func.count())
            .where(*in_events)
            .group_by(sender)
            .order_by(func.count().desc(), sender)
            .limit(top)
        ).all()

        def created(model: Any) -> list[Any]:
            where = [model.account_id == account.id]
            return [*where, model.created_at >= since] if since else where

        return {
            "account": account.slug,
            "since": since.isoformat() if since else None,
            "messages": sum(by_decision.values()),
            "by_decision": by_decision,
            "by_reason": by_reason,
            "engagements": _count(session, Engagement, *created(Engagement)),
            "contacts": _count(
                session, Contact, *created(Contact), col(Contact.deleted_at).is_(None)
            ),
            "companies": _count(session, Company, *created(Company)),
            "top_senders": [{"address": address or "", "messages": n} for address, n in senders],
        }
