"""The capture path's statements, built once per dialect and run on the session's connection.

Issue 10: a message cost ~30 statements, and building each as an ORM `select(...)` or
`session.add(...)` took ~150 µs of Python, against ~30 µs to execute it. Built once with bind
parameters (IN lists expand), each is compiled a single time and run on the driver's cursor
(store/cursor_sql.py); rows that go together (participants, links) are one executemany. The
SQL is what the ORM emitted.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import (
    BindParameter,
    CompoundSelect,
    Connection,
    Insert,
    Select,
    Table,
    bindparam,
    func,
    literal_column,
    select,
    true,
    union_all,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from capture_server.store import cursor_sql
from capture_server.store.integration_models import EngagementValue, Webhook
from capture_server.store.models import (
    CaptureEvent,
    Company,
    Contact,
    ContactAddress,
    Deal,
    DealContact,
    Engagement,
    EngagementCompany,
    EngagementContact,
    EngagementDeal,
    Participant,
    ThreadMessage,
)


def _table(model: Any) -> Table:
    table: Table = model.__table__
    return table


@dataclass(frozen=True)
class CaptureStatements:
    contacts_by_primary: Select[Any]
    contacts_by_address: Select[Any]
    insert_contact: Insert
    insert_company: Insert
    companies_by_domain: Select[Any]
    insert_engagement: Insert  # RETURNING id: a row back means this write created it
    engagement_by_key: Select[Any]
    insert_participant: Insert
    insert_engagement_contact: Insert
    insert_engagement_company: Insert
    insert_engagement_deal: Insert
    insert_value: Insert
    insert_thread_message: Insert
    existing_deals: Select[Any]
    open_deals: Select[Any]
    # (0, message_id, thread) rows of engagements, then (1, message_id, thread) of thread_message
    threads: CompoundSelect[Any]
    insert_event: Insert
    webhooks_of_account: Select[Any]


@cache
def statements(dialect: str) -> CaptureStatements:
    """The statements for one SQL dialect ("sqlite" or "postgresql"), made on first use."""
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    account: BindParameter[int] = bindparam("account_id")
    contact = _table(Contact)
    engagement = _table(Engagement)
    return CaptureStatements(
        contacts_by_primary=select(contact.c.id, contact.c.primary_address).where(
            contact.c.account_id == account,
            contact.c.primary_address.in_(bindparam("addresses", expanding=True)),
        ),
        # An additional address shared by several contacts belongs to the oldest.
        contacts_by_address=(
            select(_table(ContactAddress).c.address, contact.c.id)
            .join(contact, contact.c.id == _table(ContactAddress).c.contact_id)
            .where(
                _table(ContactAddress).c.account_id == account,
                _table(ContactAddress).c.address.in_(bindparam("addresses", expanding=True)),
            )
            .order_by(contact.c.created_at.desc(), contact.c.id.desc())
        ),
        insert_contact=insert(contact).on_conflict_do_nothing(
            index_elements=["account_id", "primary_address"]
        ),
        insert_company=insert(_table(Company)).on_conflict_do_nothing(
            index_elements=["account_id", "domain"]
        ),
        companies_by_domain=select(_table(Company).c.domain, _table(Company).c.id).where(
            _table(Company).c.account_id == account,
            _table(Company).c.domain.in_(bindparam("domains", expanding=True)),
        ),
        insert_engagement=insert(engagement)
        .on_conflict_do_nothing(index_elements=["account_id", "dedupe_key"])
        .returning(engagement.c.id),
        engagement_by_key=select(
            engagement.c.id, engagement.c.content_hash, engagement.c.thread_id
        ).where(engagement.c.account_id == account, engagement.c.dedupe_key == bindparam("key")),
        insert_participant=_table(Participant).insert(),
        insert_engagement_contact=_table(EngagementContact).insert(),
        insert_engagement_company=_table(EngagementCompany).insert(),
        insert_engagement_deal=insert(_table(EngagementDeal)).on_conflict_do_nothing(
            index_elements=["engagement_id", "deal_id"]
        ),
        insert_value=_table(EngagementValue).insert(),
        insert_thread_message=insert(_table(ThreadMessage)).on_conflict_do_nothing(
            index_elements=["account_id", "message_id"]
        ),
        existing_deals=select(_table(Deal).c.id).where(
            _table(Deal).c.account_id == account,
            _table(Deal).c.id.in_(bindparam("deal_ids", expanding=True)),
        ),
        open_deals=(
            select(_table(Deal).c.id)
            .join(_table(DealContact), _table(DealContact).c.deal_id == _table(Deal).c.id)
            .where(
                _table(DealContact).c.contact_id.in_(bindparam("contact_ids", expanding=True)),
                _table(Deal).c.is_open == true(),
            )
            .order_by(_table(Deal).c.created_at.desc(), _table(Deal).c.id.desc())
        ),
        # lower(message_id) has its own index (migration 0011): no scan of the account.
        threads=union_all(
            select(literal_column("0"), engagement.c.message_id, engagement.c.thread_id).where(
                engagement.c.account_id == account,
                func.lower(engagement.c.message_id).in_(bindparam("message_ids", expanding=True)),
            ),
            select(
                literal_column("1"),
                _table(ThreadMessage).c.message_id,
                _table(ThreadMessage).c.thread_id,
            ).where(
                _table(ThreadMessage).c.account_id == account,
                _table(ThreadMessage).c.message_id.in_(bindparam("message_ids", expanding=True)),
            ),
        ).order_by(literal_column("1")),
        insert_event=_table(CaptureEvent).insert(),
        webhooks_of_account=select(_table(Webhook).c.id, _table(Webhook).c.events)
        .where(_table(Webhook).c.account_id == account)
        .order_by(_table(Webhook).c.id),
    )


def dialect_of(connection: Connection) -> CaptureStatements:
    return statements(connection.dialect.name)


def existing_deals(connection: Connection, account_id: int, deal_ids: Sequence[int]) -> list[int]:
    """Those of deal_ids that exist in the account, in their order."""
    if not deal_ids:
        return []
    rows = cursor_sql.fetch(
        connection,
        dialect_of(connection).existing_deals,
        {"account_id": account_id, "deal_ids": list(deal_ids)},
    )
    found = {deal_id for (deal_id,) in rows}
    return [deal_id for deal_id in deal_ids if deal_id in found]


def contact_ids(
    connection: Connection, account_id: int, addresses: Collection[str]
) -> dict[str, int]:
    """address → contact id: by primary address, else by an additional one (the oldest)."""
    if not addresses:
        return {}
    sql = dialect_of(connection)
    found: dict[str, int] = dict(
        (address, contact_id)
        for contact_id, address in cursor_sql.fetch(
            connection,
            sql.contacts_by_primary,
            {"account_id": account_id, "addresses": list(addresses)},
        )
    )
    missing = [address for address in addresses if address not in found]
    if missing:
        # Ordered newest first, so the oldest contact is written last and wins.
        for address, contact_id in cursor_sql.fetch(
            connection, sql.contacts_by_address, {"account_id": account_id, "addresses": missing}
        ):
            found[address] = contact_id
    return found
