"""Extractors, the values they find, deal references, and the hooks `Store.record` calls.

The hooks run inside record's transaction: values, deal links and webhook outbox rows
commit with the engagement and its event, or not at all.
"""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection
from sqlmodel import Session, col, select

from capture_server.pipeline.enrich import check_pattern
from capture_server.pipeline.message import (
    Action,
    CaptureTarget,
    Decision,
    EngagementDraft,
    Extractor,
    TraceEntry,
)
from capture_server.store import cursor_sql, webhooks
from capture_server.store.capture_sql import dialect_of, existing_deals
from capture_server.store.integration_models import EngagementValue, ExtractorRow
from capture_server.store.models import Company, Contact, utcnow

if TYPE_CHECKING:
    from capture_server.store.repositories import Store

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")  # sees only what an admin typed
MAX_EXTRACTORS = 50


def _store_error(message: str) -> Exception:
    from capture_server.store.repositories import StoreError

    return StoreError(message)


# -- extractors (the admin's commands) ----------------------------------------------------------


def add_extractor(store: Store, slug: str, name: str, pattern: str) -> None:
    name = name.strip().lower()
    if not _NAME.match(name):
        raise _store_error(
            f"extractor name {name!r}: 1-40 lower-case letters, digits or _, a letter first"
        )
    try:
        check_pattern(pattern)
    except ValueError as error:
        raise _store_error(str(error)) from None
    account_id = store.account_id(slug)
    with store._write() as session:
        rows = session.exec(select(ExtractorRow).where(ExtractorRow.account_id == account_id))
        existing = {row.name: row for row in rows}
        if name in existing:
            row = existing[name]
            row.pattern = pattern  # re-adding a name replaces its pattern
        elif len(existing) >= MAX_EXTRACTORS:
            raise _store_error(f"an account has at most {MAX_EXTRACTORS} extractors")
        else:
            row = ExtractorRow(account_id=account_id, name=name, pattern=pattern)
        session.add(row)


def extractors(store: Store, slug: str) -> list[dict[str, Any]]:
    account_id = store.account_id(slug)
    with store._read() as session:
        rows = session.exec(
            select(ExtractorRow)
            .where(ExtractorRow.account_id == account_id)
            .order_by(col(ExtractorRow.name))
        )
        return [
            {"name": row.name, "pattern": row.pattern, "created_at": row.created_at.isoformat()}
            for row in rows
        ]


def remove_extractor(store: Store, slug: str, name: str) -> None:
    account_id = store.account_id(slug)
    with store._write() as session:
        row = session.exec(
            select(ExtractorRow).where(
                ExtractorRow.account_id == account_id, ExtractorRow.name == name.strip().lower()
            )
        ).first()
        if row is None:
            raise _store_error(f"no extractor {name!r} in account {slug!r}")
        session.delete(row)  # values already found stay on their engagements


def account_extractors(store: Store, account_id: int) -> tuple[Extractor, ...]:
    """What the enrich stage runs, read with the snapshot before the pipeline."""
    with store._read() as session:
        rows = session.exec(
            select(ExtractorRow.name, ExtractorRow.pattern)
            .where(ExtractorRow.account_id == account_id)
            .order_by(col(ExtractorRow.name))
        )
        return tuple(Extractor(name, pattern) for name, pattern in rows)


def extracted_values(session: Session, engagement_id: str) -> dict[str, list[str]]:
    """The "extracted" key of the engagement JSON."""
    found: dict[str, list[str]] = {}
    for name, value in session.exec(
        select(EngagementValue.name, EngagementValue.value)
        .where(EngagementValue.engagement_id == engagement_id)
        .order_by(col(EngagementValue.name), col(EngagementValue.position))
    ):
        found.setdefault(name, []).append(value)
    return found


# -- hooks of Store.record ------------------------------------------------------------------


def engagement_written(
    session: Session,
    target: CaptureTarget,
    decision: Decision,
    engagement_id: str,
    known: set[str],
    deals: list[int],
    cached_hooks: webhooks.CachedHooks | None = None,
) -> Decision:
    """Values and referenced deals of a new engagement, and its webhook events.

    known: the contact addresses that existed before the write; deals: those linked by it;
    cached_hooks: the account's webhooks as cached (webhooks.hooks_now).
    Returns the decision with a trace line for deal references (a missing deal is told).
    """
    draft = decision.draft
    assert draft is not None
    connection = session.connection()
    sql = dialect_of(connection)
    cursor_sql.insert_many(
        connection,
        sql.insert_value,
        [
            {"engagement_id": engagement_id, "name": name, "position": position, "value": value}
            for name, values in draft.extracted.items()
            for position, value in enumerate(values)
        ],
    )
    trace = decision.trace
    if draft.referenced_deals:
        linked, missing = _link_deals(connection, target.account_id, engagement_id, draft)
        deals = [*deals, *linked]
        parts = []
        if linked:
            parts.append("linked deal(s) " + ", ".join(map(str, linked)))
        if missing:
            parts.append("no deal " + ", ".join(map(str, missing)) + " in this account")
        outcome = "pass" if not missing else "warn"
        trace = (*trace, TraceEntry("references", outcome, "; ".join(parts)))
    hooks = webhooks.hooks_now(session, target.account_id, cached_hooks)
    if not hooks:
        return dataclasses.replace(decision, trace=trace)
    webhooks.enqueue(
        session,
        target,
        webhooks.ENGAGEMENT_CREATED,
        engagement_id,
        {"engagement": _engagement_payload(engagement_id, draft, sorted(set(deals)))},
        hooks,
    )
    for mailbox in draft.contacts:
        if mailbox.key in known or not webhooks.wanted(hooks, webhooks.CONTACT_CREATED):
            continue
        row = session.exec(
            select(Contact, Company.domain)
            .join(Company, col(Company.id) == Contact.company_id, isouter=True)
            .where(Contact.account_id == target.account_id,
                   Contact.primary_address == mailbox.key)
        ).first()  # fmt: skip
        if row is None:
            continue  # not created (policy, tombstone)
        contact, company = row
        webhooks.enqueue(
            session,
            target,
            webhooks.CONTACT_CREATED,
            str(contact.id),
            {"contact": {"id": contact.id, "address": contact.primary_address,
                         "name": contact.name, "company": company,
                         "engagement_id": engagement_id}},
            hooks,
        )  # fmt: skip
    return dataclasses.replace(decision, trace=trace)


def event_written(
    session: Session,
    target: CaptureTarget,
    decision: Decision,
    event_id: str,
    smtp_reply: str,
    cached_hooks: webhooks.CachedHooks | None = None,
) -> None:
    if decision.action is Action.REJECT:
        webhooks.enqueue(
            session,
            target,
            webhooks.MESSAGE_REJECTED,
            event_id,
            {"event": {"id": event_id, "kind": target.kind.value,
                       "reason": decision.reason.value, "smtp_reply": smtp_reply}},
            webhooks.hooks_now(session, target.account_id, cached_hooks),
        )  # fmt: skip


def _link_deals(
    connection: Connection, account_id: int, engagement_id: str, draft: EngagementDraft
) -> tuple[list[int], list[int]]:
    """Link the deals the email names; (linked, missing). Already linked ones stay once."""
    wanted = list(draft.referenced_deals)
    linked = existing_deals(connection, account_id, wanted)
    # ON CONFLICT DO NOTHING: a deal the thread also had is linked once.
    cursor_sql.insert_many(
        connection,
        dialect_of(connection).insert_engagement_deal,
        [{"engagement_id": engagement_id, "deal_id": deal_id} for deal_id in linked],
    )
    return linked, [deal_id for deal_id in wanted if deal_id not in linked]


def _engagement_payload(
    engagement_id: str, draft: EngagementDraft, deals: list[int]
) -> dict[str, Any]:
    """What a webhook receiver learns: the engagement without its body (sharing applied)."""
    email = draft.email
    return {
        "id": engagement_id,
        "kind": draft.kind.value,
        "direction": draft.direction.value,
        "owner": draft.owner,
        "subject": email.subject,
        "occurred_at": email.occurred_at.isoformat() if email.occurred_at else None,
        "message_id": email.message_id,
        "from": email.sender.as_dict() if email.sender else None,
        "contacts": [mailbox.key for mailbox in draft.contacts],
        "companies": list(draft.companies),
        "deals": deals,
        "thread_id": draft.thread_id,
        "extracted": {name: list(values) for name, values in draft.extracted.items()},
        "logged_at": utcnow().isoformat(),
    }
