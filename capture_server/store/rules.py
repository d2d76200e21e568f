"""Queries behind the logging rules users manage: never-log list, contact deletion, user
addresses and sharing, deals, and the durable notice ledger. Functions over a Store."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, or_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col, select

from capture_server.pipeline.canonical import (
    ascii_address,
    ascii_domain,
    canonical_address,
    canonical_pattern,
)
from capture_server.pipeline.filter import is_external, matches_never_log
from capture_server.pipeline.identity import tombstone_hash
from capture_server.pipeline.message import AccountSnapshot, AddressKind, Mailbox, SharingLevel
from capture_server.store.integration_models import EngagementValue
from capture_server.store.models import (
    Account,
    AttachmentRow,
    Blob,
    CaptureEvent,
    Company,
    Contact,
    ContactAddress,
    ContactSuggestion,
    Deal,
    DealContact,
    Engagement,
    EngagementCompany,
    EngagementContact,
    EngagementDeal,
    NeverLog,
    NoticeSent,
    Participant,
    Tombstone,
    User,
    UserAddress,
    utcnow,
)
from capture_server.store.repositories import (
    Store,
    StoreError,
    _clean_address,
    _insert_ignore,
    find_contact,
)

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
EXTRA_ADDRESS_KINDS = (AddressKind.ALIAS, AddressKind.CONNECTED, AddressKind.TEAM)


def _rowcount(result: Any) -> int:
    return int(result.rowcount)


# -- never-log list -------------------------------------------------------------------------


def never_log_pattern(raw: str) -> str:
    """An exact address or a domain ('@d', '*.d' and 'd' all mean d and its subdomains)."""
    text = raw.strip().lower().rstrip(".")
    if not text:
        raise StoreError("give an address (ann@example.com) or a domain (example.com)")
    if text.startswith(("*.", "@")):
        text = text.removeprefix("*.").removeprefix("@")
    # One form for an internationalised domain (canonical.py), checked in its ASCII form.
    text = canonical_pattern(text)
    local, at, domain = text.rpartition("@")
    if at and (not local or any(c.isspace() or c in '@<>(),;:"' for c in local)):
        raise StoreError(f"{raw.strip()!r} is not an email address")
    ascii_form = ascii_domain(domain) or domain
    labels = ascii_form.split(".")
    if len(labels) < 2 or len(ascii_form) > 253 or not all(map(_LABEL.match, labels)):
        raise StoreError(
            f"{raw.strip()!r} is neither an address nor a domain such as example.com "
            "(a domain needs a dot; letters, digits and hyphens only)"
        )
    return text


@dataclass(frozen=True)
class PurgeReport:
    pattern: str
    added: bool
    engagements_deleted: int = 0
    engagements_trimmed: int = 0
    contacts_deleted: int = 0
    companies_deleted: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def add_never_log(store: Store, slug: str, raw: str, *, purge: bool = False) -> PurgeReport:
    """Add a pattern; history is only touched with purge (one transaction with the add)."""
    pattern = never_log_pattern(raw)
    account_id = store.account_id(slug)
    snapshot = store.snapshot(account_id)
    if pattern in snapshot.domains or any(
        pattern.endswith("." + own) or pattern.endswith("@" + own) for own in snapshot.domains
    ):
        raise StoreError(
            f"{pattern} is in the account's own domains: internal mail is never logged anyway"
        )
    if pattern in snapshot.addresses:
        raise StoreError(f"{pattern} is an address of a user of this account, not a contact")
    with store._write() as session:
        before = session.exec(
            select(func.count()).where(
                NeverLog.account_id == account_id, NeverLog.pattern == pattern
            )
        ).one()
        _insert_ignore(
            session,
            NeverLog,
            {"account_id": account_id, "pattern": pattern, "created_at": utcnow()},
            ["account_id", "pattern"],
        )
        if not purge:
            return PurgeReport(pattern, added=not before)
        patterns = frozenset(
            session.exec(select(NeverLog.pattern).where(NeverLog.account_id == account_id))
        )
        current = dataclasses.replace(snapshot, never_log=patterns)
        return _purge(session, current, pattern, added=not before)


def never_log_entries(store: Store, slug: str) -> list[dict[str, Any]]:
    with store._read() as session:
        account = store._account(session, slug)
        rows = session.exec(
            select(NeverLog)
            .where(NeverLog.account_id == account.id)
            .order_by(col(NeverLog.pattern))
        ).all()
        return [
            {
                "pattern": row.pattern,
                "kind": "address" if "@" in row.pattern else "domain",
                "created_at": row.created_at.isoformat(),
            }
            for row in rows
        ]


def remove_never_log(store: Store, slug: str, raw: str) -> str:
    pattern = never_log_pattern(raw)
    with store._write() as session:
        account = store._account(session, slug)
        removed = _rowcount(
            session.execute(
                delete(NeverLog).where(
                    col(NeverLog.account_id) == account.id, col(NeverLog.pattern) == pattern
                )
            )
        )
        if not removed:
            raise StoreError(f"{pattern} is not on the never-log list of {account.slug!r}")
    return pattern


def _matching(column: Any, pattern: str) -> ColumnElement[bool]:
    value = func.lower(column)
    if "@" in pattern:
        return value == pattern
    # Validated domains hold no LIKE wildcards (letters, digits, hyphens and dots only).
    return or_(value.like("%@" + pattern), value.like("%." + pattern))


def _purge(session: Session, snapshot: AccountSnapshot, pattern: str, added: bool) -> PurgeReport:
    account_id = snapshot.account_id
    touched = set(
        session.exec(
            select(Engagement.id).where(
                Engagement.account_id == account_id, _matching(Engagement.from_address, pattern)
            )
        )
    ) | set(
        session.exec(
            select(Participant.engagement_id)
            .join(Engagement, col(Engagement.id) == Participant.engagement_id)
            .where(Engagement.account_id == account_id, _matching(Participant.address, pattern))
        )
    )
    doomed: list[str] = []
    trimmed = 0
    for engagement_id in sorted(touched):
        sender = session.exec(
            select(Engagement.from_address).where(Engagement.id == engagement_id)
        ).one()
        others = session.exec(
            select(Participant.address).where(Participant.engagement_id == engagement_id)
        ).all()
        people = [Mailbox(a) for a in (sender, *others) if a]
        external = [m for m in people if is_external(snapshot, m)]
        if all(matches_never_log(snapshot.never_log, m.key) for m in external):
            doomed.append(engagement_id)
            continue
        # Mixed company: the never-logged recipients go, as capture would have dropped them.
        # The sender stays (capture keeps it too); the contact link goes with the contact.
        session.execute(
            delete(Participant).where(
                col(Participant.engagement_id) == engagement_id,
                _matching(Participant.address, pattern),
            )
        )
        trimmed += 1
    _delete_engagements(session, doomed)
    contacts = list(
        session.exec(
            select(Contact.id).where(
                Contact.account_id == account_id, _matching(Contact.primary_address, pattern)
            )
        )
    )
    _delete_contacts(session, [c for c in contacts if c is not None])
    session.execute(
        delete(ContactAddress).where(
            col(ContactAddress.account_id) == account_id, _matching(ContactAddress.address, pattern)
        )
    )
    companies_deleted = 0
    if "@" not in pattern:
        company_ids = [
            c
            for c in session.exec(
                select(Company.id).where(
                    Company.account_id == account_id,
                    or_(col(Company.domain) == pattern, col(Company.domain).like("%." + pattern)),
                )
            )
            if c is not None
        ]
        if company_ids:
            session.execute(
                delete(EngagementCompany).where(col(EngagementCompany.company_id).in_(company_ids))
            )
            session.execute(
                update(Contact)
                .where(col(Contact.company_id).in_(company_ids))
                .values(company_id=None)
            )
            session.execute(delete(Company).where(col(Company.id).in_(company_ids)))
            companies_deleted = len(company_ids)
    return PurgeReport(
        pattern,
        added,
        engagements_deleted=len(doomed),
        engagements_trimmed=trimmed,
        contacts_deleted=len(contacts),
        companies_deleted=companies_deleted,
    )


def _delete_engagements(session: Session, ids: list[str]) -> None:
    if not ids:
        return
    hashes = set(
        session.exec(select(AttachmentRow.sha256).where(col(AttachmentRow.engagement_id).in_(ids)))
    )
    for table in (Participant, AttachmentRow, EngagementContact, EngagementCompany, EngagementDeal):
        session.execute(delete(table).where(col(table.engagement_id).in_(ids)))
    session.execute(delete(EngagementValue).where(col(EngagementValue.engagement_id).in_(ids)))
    # The event stays (it says a message came and why), but no longer points at the email.
    session.execute(
        update(CaptureEvent)
        .where(col(CaptureEvent.engagement_id).in_(ids))
        .values(engagement_id=None)
    )
    session.execute(delete(Engagement).where(col(Engagement.id).in_(ids)))
    if hashes:
        still_used = set(
            session.exec(select(AttachmentRow.sha256).where(col(AttachmentRow.sha256).in_(hashes)))
        )
        orphans = hashes - still_used
        if orphans:
            session.execute(delete(Blob).where(col(Blob.sha256).in_(orphans)))


def _delete_contacts(session: Session, ids: list[int]) -> None:
    if not ids:
        return
    for table in (EngagementContact, DealContact, ContactSuggestion):
        session.execute(delete(table).where(col(table.contact_id).in_(ids)))
    session.execute(delete(ContactAddress).where(col(ContactAddress.contact_id).in_(ids)))
    session.execute(delete(Contact).where(col(Contact.id).in_(ids)))


# -- contact deletion -----------------------------------------------------------------------


def delete_contact(store: Store, slug: str, email: str, *, permanent: bool = False) -> str:
    """Soft delete (deleted_at), or erase the contact's personal data and tombstone it."""
    address = _clean_address(email)
    with store._write() as session:
        account = store._account(session, slug)
        assert account.id is not None
        contact_id = find_contact(session, account.id, address)
        contact = session.get(Contact, contact_id) if contact_id is not None else None
        if contact is None or contact.id is None:
            raise StoreError(f"no contact {address} in account {account.slug!r}")
        if not permanent:
            if contact.deleted_at is not None:
                return f"contact {contact.primary_address} was already deleted"
            contact.deleted_at = utcnow()
            session.add(contact)
            return f"contact {contact.primary_address} deleted (use --permanent to erase it)"
        addresses = [
            contact.primary_address,
            *session.exec(
                select(ContactAddress.address).where(ContactAddress.contact_id == contact.id)
            ),
        ]
        _erase_addresses(session, account.id, addresses)
        _delete_contacts(session, [contact.id])
        for each in addresses:
            _insert_ignore(
                session,
                Tombstone,
                {
                    "account_id": account.id,
                    "address_hash": tombstone_hash(account.id, each),
                    "created_at": utcnow(),
                },
                ["account_id", "address_hash"],
            )
        return f"contact {contact.primary_address} erased; capture will never re-create it"


def _erase_addresses(session: Session, account_id: int, addresses: Sequence[str]) -> None:
    """The person's address and name leave every engagement; the engagement itself stays."""
    # Participants are kept as the mail wrote them: an IDN domain in either form.
    forms = [(canonical_address(a), ascii_address(a)) for a in addresses]
    keys = sorted({form for pair in forms for form in pair if form})
    in_account = select(Engagement.id).where(Engagement.account_id == account_id)
    session.execute(
        delete(Participant).where(
            col(Participant.engagement_id).in_(in_account),
            func.lower(Participant.address).in_(keys),
        )
    )
    session.execute(
        update(Engagement)
        .where(
            col(Engagement.account_id) == account_id,
            func.lower(Engagement.from_address).in_(keys),
        )
        .values(from_address=None, from_name=None)
    )


# -- users ----------------------------------------------------------------------------------


def _account_and_user(
    store: Store, session: Session, slug: str, login: str
) -> tuple[Account, User]:
    account = store._account(session, slug)
    return account, store._user(session, account, login)


def add_user_address(store: Store, slug: str, login: str, raw: str, kind: AddressKind) -> str:
    if kind not in EXTRA_ADDRESS_KINDS:
        raise StoreError("--kind must be alias, connected or team")
    address = _clean_address(raw)
    try:
        with store._write() as session:
            account, user = _account_and_user(store, session, slug, login)
            assert account.id is not None and user.id is not None
            session.add(
                UserAddress(account_id=account.id, user_id=user.id, address=address, kind=kind)
            )
    except IntegrityError as error:
        raise StoreError(f"{login.strip().lower()} already has the address {address}") from error
    return address


def remove_user_address(store: Store, slug: str, login: str, raw: str) -> str:
    address = _clean_address(raw)
    with store._write() as session:
        _, user = _account_and_user(store, session, slug, login)
        if address == user.email:
            raise StoreError(f"{address} is the login of {user.email}; it cannot be removed")
        removed = _rowcount(
            session.execute(
                delete(UserAddress).where(
                    col(UserAddress.user_id) == user.id, col(UserAddress.address) == address
                )
            )
        )
        if not removed:
            raise StoreError(f"{user.email} has no address {address}")
    return address


def set_sharing(store: Store, slug: str, login: str, level: SharingLevel) -> None:
    """Applies to mail logged from now on; what was already stored is not rewritten."""
    with store._write() as session:
        _, user = _account_and_user(store, session, slug, login)
        user.sharing = level.value
        session.add(user)


def users(store: Store, slug: str) -> list[dict[str, Any]]:
    with store._read() as session:
        account = store._account(session, slug)
        rows = session.exec(
            select(User).where(User.account_id == account.id).order_by(col(User.id))
        ).all()
        result = []
        for user in rows:
            addresses = session.exec(
                select(UserAddress)
                .where(UserAddress.user_id == user.id)
                .order_by(col(UserAddress.id))
            ).all()
            result.append(
                {
                    "id": user.id,
                    "email": user.email,
                    "name": user.name,
                    "sharing": user.sharing,
                    "fallback_owner": user.id == account.fallback_owner_id,
                    "addresses": [{"address": a.address, "kind": a.kind} for a in addresses],
                }
            )
        return result


# -- deals ----------------------------------------------------------------------------------


def add_deal(
    store: Store,
    slug: str,
    name: str,
    contacts: Sequence[str],
    *,
    stage: str = "open",
    close_date: datetime | None = None,
) -> int:
    if not name.strip():
        raise StoreError("a deal needs a name")
    if not contacts:
        raise StoreError("give at least one --contact EMAIL")
    with store._write() as session:
        account = store._account(session, slug)
        assert account.id is not None
        contact_ids: list[int] = []
        for raw in contacts:
            address = _clean_address(raw)
            found = find_contact(session, account.id, address)
            if found is None:
                raise StoreError(
                    f"no contact {address} in account {account.slug!r} "
                    "(contacts are created when their mail is logged)"
                )
            if found not in contact_ids:
                contact_ids.append(found)
        deal = Deal(account_id=account.id, name=name.strip(), stage=stage, close_date=close_date)
        session.add(deal)
        session.flush()
        assert deal.id is not None
        for contact_id in contact_ids:
            session.add(DealContact(deal_id=deal.id, contact_id=contact_id))
        return deal.id


def close_deal(store: Store, slug: str, deal_id: int, stage: str = "closed") -> None:
    with store._write() as session:
        account = store._account(session, slug)
        deal = session.get(Deal, deal_id)
        if deal is None or deal.account_id != account.id:
            raise StoreError(f"no deal {deal_id} in account {account.slug!r}")
        if not deal.is_open:
            raise StoreError(f"deal {deal_id} is already closed ({deal.stage})")
        deal.is_open = False
        deal.stage = stage
        deal.close_date = deal.close_date or utcnow()
        session.add(deal)


def deals(store: Store, slug: str) -> list[dict[str, Any]]:
    with store._read() as session:
        account = store._account(session, slug)
        rows = session.exec(
            select(Deal).where(Deal.account_id == account.id).order_by(col(Deal.id))
        ).all()
        result = []
        for deal in rows:
            contacts = session.exec(
                select(Contact.primary_address)
                .join(DealContact, col(DealContact.contact_id) == Contact.id)
                .where(DealContact.deal_id == deal.id)
                .order_by(col(Contact.id))
            ).all()
            result.append(
                {
                    "id": deal.id,
                    "name": deal.name,
                    "stage": deal.stage,
                    "open": deal.is_open,
                    "close_date": deal.close_date.isoformat() if deal.close_date else None,
                    "contacts": list(contacts),
                    "created_at": deal.created_at.isoformat(),
                }
            )
        return result


# -- notices --------------------------------------------------------------------------------


def claim_notice(
    store: Store,
    account_id: int,
    user_id: int,
    message_key: str,
    reason: str,
    *,
    per_hour: int,
) -> str | None:
    """Reserve the right to send one notice; None if granted, else why not.

    Claimed before sending: a notice that then fails is not retried (at most one per message).
    """
    with store._write() as session:
        # Serialises claims for one rep across daemons (SQLite's write lock does it already).
        session.exec(select(User.id).where(User.id == user_id).with_for_update()).first()
        since = utcnow() - timedelta(hours=1)
        recent = session.exec(
            select(func.count()).where(
                NoticeSent.user_id == user_id, col(NoticeSent.sent_at) >= since
            )
        ).one()
        if recent >= per_hour:
            return f"rate limit: {recent} notice(s) to this rep in the last hour"
        table = NoticeSent.__table__  # type: ignore[attr-defined]
        insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        # RETURNING, not rowcount: psycopg reports 1 for a skipped ON CONFLICT row.
        inserted = session.execute(
            insert(table)
            .values(
                account_id=account_id,
                user_id=user_id,
                message_key=message_key,
                reason=reason,
                sent_at=utcnow(),
            )
            .on_conflict_do_nothing(index_elements=["account_id", "message_key"])
            .returning(table.c.id)
        ).first()
        return None if inserted else "a notice was already sent for this message"
