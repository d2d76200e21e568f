"""Contact profiles: signature fields applied to contacts, suggestions, duplicates.

apply_profile runs inside Store.record's transaction, with the engagement it was read from.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from sqlmodel import Session, col, select

from capture_server.enrichment.duplicates import ContactKey, duplicate_pairs
from capture_server.pipeline.defaults import FREE_MAIL_DOMAINS
from capture_server.pipeline.message import EngagementDraft, ProfileField, TraceEntry
from capture_server.store.models import (
    Company,
    Contact,
    ContactAddress,
    ContactSuggestion,
    utcnow,
)

if TYPE_CHECKING:
    from capture_server.store.repositories import Store

PROFILE_FIELDS = ("name", "job_title", "company_name", "phone", "website")
CAPTURE, PERSON = "capture", "person"
PENDING, ACCEPTED, REJECTED = "pending", "accepted", "rejected"


def _store_error(message: str) -> Exception:
    from capture_server.store.repositories import StoreError

    return StoreError(message)


def sources(contact: Contact) -> dict[str, str]:
    """Who set each field; a field with a value and no entry came from capture."""
    found: dict[str, str] = json.loads(contact.field_sources or "{}")
    return found


def _same(field: str, current: str, value: str) -> bool:
    if field == "website":
        current, value = (v.lower().split("://")[-1].rstrip("/") for v in (current, value))
    return " ".join(current.casefold().split()) == " ".join(value.casefold().split())


def profile_json(contact: Contact) -> dict[str, Any]:
    """The keys `contacts list --json` adds for the profile."""
    given = sources(contact)
    return {
        "job_title": contact.job_title,
        "company_name": contact.company_name,
        "phone": contact.phone,
        "website": contact.website,
        "set_by": {
            field: given.get(field, CAPTURE)
            for field in PROFILE_FIELDS
            if getattr(contact, field) is not None
        },
    }


def apply_profile(
    session: Session, account_id: int, engagement_id: str, draft: EngagementDraft
) -> TraceEntry | None:
    """Fill the sender contact's empty fields with sure values; keep the others as suggestions.

    A field a person set is never touched; a rejected suggestion is not made again.
    """
    if not draft.profile or draft.profile_contact is None:
        return None
    from capture_server.store.repositories import find_contact

    contact_id = find_contact(session, account_id, draft.profile_contact)
    contact = session.get(Contact, contact_id) if contact_id is not None else None
    if contact is None or contact.id is None or contact.deleted_at is not None:
        return None
    given = sources(contact)
    filled: list[str] = []
    suggested: list[str] = []
    for found in draft.profile:
        if given.get(found.field) == PERSON:
            continue
        current = getattr(contact, found.field)
        if current and _same(found.field, current, found.value):
            continue
        if not current and found.fill:
            setattr(contact, found.field, found.value)
            given[found.field] = CAPTURE
            filled.append(found.field)
        elif _suggest(session, account_id, contact.id, engagement_id, found):
            suggested.append(found.field)
    if filled:
        contact.field_sources = json.dumps(given, sort_keys=True)
        session.add(contact)
    parts = []
    if filled:
        parts.append("filled " + ", ".join(filled))
    if suggested:
        parts.append("suggested " + ", ".join(suggested))
    return TraceEntry("profile", "pass", "; ".join(parts) or "nothing new")


def _suggest(session: Session, account_id: int, contact_id: int, engagement_id: str,
             found: ProfileField) -> bool:  # fmt: skip
    existing = session.exec(
        select(ContactSuggestion.id).where(
            ContactSuggestion.contact_id == contact_id,
            ContactSuggestion.field == found.field,
            ContactSuggestion.value == found.value,
        )
    ).first()
    if existing is not None:
        return False  # pending already, or decided: asked once
    session.add(
        ContactSuggestion(
            account_id=account_id,
            contact_id=contact_id,
            field=found.field,
            value=found.value,
            confidence=found.confidence,
            engagement_id=engagement_id,
        )
    )
    return True


# -- people's commands ---------------------------------------------------------------------------


def _contact(store: Store, session: Session, slug: str, address: str) -> Contact:
    from capture_server.store.repositories import _clean_address, find_contact

    account = store._account(session, slug)
    assert account.id is not None
    key = _clean_address(address)
    contact_id = find_contact(session, account.id, key)
    contact = session.get(Contact, contact_id) if contact_id is not None else None
    if contact is None:
        raise _store_error(f"no contact {key} in account {account.slug!r}")
    return contact


def set_fields(store: Store, slug: str, address: str, values: dict[str, str]) -> dict[str, Any]:
    """A person sets fields: capture never overwrites them afterwards. "" clears a field."""
    unknown = set(values) - set(PROFILE_FIELDS)
    if unknown:
        raise _store_error(f"unknown field(s): {', '.join(sorted(unknown))}")
    if not values:
        raise _store_error("give at least one field, e.g. --title 'Head of Sales'")
    with store._write() as session:
        contact = _contact(store, session, slug, address)
        given = sources(contact)
        for field, value in values.items():
            setattr(contact, field, value.strip() or None)
            given[field] = PERSON
        contact.field_sources = json.dumps(given, sort_keys=True)
        session.add(contact)
        return {"id": contact.id, "address": contact.primary_address, **_fields(contact)}


def _fields(contact: Contact) -> dict[str, Any]:
    return {field: getattr(contact, field) for field in PROFILE_FIELDS}


def suggestions(store: Store, slug: str, status: str | None = PENDING) -> list[dict[str, Any]]:
    with store._read() as session:
        account = store._account(session, slug)
        query = (
            select(ContactSuggestion, Contact.primary_address)
            .join(Contact, col(Contact.id) == ContactSuggestion.contact_id)
            .where(ContactSuggestion.account_id == account.id)
        )
        if status is not None:
            query = query.where(ContactSuggestion.status == status)
        rows = session.exec(query.order_by(col(ContactSuggestion.id))).all()
        return [_suggestion_json(row, address) for row, address in rows]


def _suggestion_json(row: ContactSuggestion, address: str) -> dict[str, Any]:
    return {
        "id": row.id,
        "contact": address,
        "field": row.field,
        "value": row.value,
        "confidence": row.confidence,
        "engagement_id": row.engagement_id,
        "status": row.status,
        "created_at": row.created_at.isoformat(),
    }


def decide(store: Store, slug: str, suggestion_id: int, accept: bool) -> dict[str, Any]:
    """Accept (the value fills the field, set by a person from now on) or reject a suggestion."""
    with store._write() as session:
        account = store._account(session, slug)
        row = session.get(ContactSuggestion, suggestion_id)
        if row is None or row.account_id != account.id:
            raise _store_error(f"no suggestion {suggestion_id} in account {account.slug!r}")
        if row.status != PENDING:
            raise _store_error(f"suggestion {suggestion_id} was already {row.status}")
        contact = session.get(Contact, row.contact_id)
        assert contact is not None
        row.status = ACCEPTED if accept else REJECTED
        row.decided_at = utcnow()
        session.add(row)
        if accept:
            setattr(contact, row.field, row.value)
            given = sources(contact)
            given[row.field] = PERSON  # an admin chose it: capture leaves it alone
            contact.field_sources = json.dumps(given, sort_keys=True)
            session.add(contact)
        return _suggestion_json(row, contact.primary_address)


def merge_profile(session: Session, kept: Contact, gone: Contact) -> None:
    """contacts merge: the kept contact's empty fields take the merged one's; suggestions move."""
    given, other = sources(kept), sources(gone)
    for field in PROFILE_FIELDS:
        if not getattr(kept, field) and getattr(gone, field):
            setattr(kept, field, getattr(gone, field))
            given[field] = other.get(field, CAPTURE)
    kept.field_sources = json.dumps(given, sort_keys=True)
    for row in session.exec(
        select(ContactSuggestion).where(ContactSuggestion.contact_id == gone.id)
    ):
        assert kept.id is not None
        row.contact_id = kept.id
        session.add(row)


def duplicates(store: Store, slug: str) -> list[dict[str, Any]]:
    """Pairs of contacts that look like one person, the older one to keep, with the reason."""
    with store._read() as session:
        account = store._account(session, slug)
        rows = session.exec(
            select(Contact, Company.domain)
            .join(Company, col(Company.id) == Contact.company_id, isouter=True)
            .where(Contact.account_id == account.id, col(Contact.deleted_at).is_(None))
            .order_by(col(Contact.id))
        ).all()
        extra: dict[int, list[str]] = {}
        for contact_id, address in session.exec(
            select(ContactAddress.contact_id, ContactAddress.address)
            .where(ContactAddress.account_id == account.id)
            .order_by(col(ContactAddress.id))
        ):
            extra.setdefault(contact_id, []).append(address)
    keys = []
    for contact, domain in rows:
        assert contact.id is not None
        company = domain or contact.primary_address.rpartition("@")[2]
        keys.append(
            ContactKey(
                id=contact.id,
                name=contact.name,
                company=None if company in FREE_MAIL_DOMAINS else company,
                addresses=(contact.primary_address, *extra.get(contact.id, [])),
            )
        )
    return [
        {
            "keep": pair.keep.addresses[0],
            "merge": pair.merge.addresses[0],
            "keep_id": pair.keep.id,
            "merge_id": pair.merge.id,
            "reason": pair.reason,
            "detail": pair.detail,
        }
        for pair in duplicate_pairs(keys)
    ]
