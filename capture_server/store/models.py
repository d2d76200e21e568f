"""SQLModel tables. Unique constraints carry idempotency; the code never checks-then-inserts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    FetchedValue,
    Index,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlmodel import Field, SQLModel

# Named constraints so Alembic migrations are the same on SQLite and PostgreSQL.
SQLModel.metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on both databases (SQLite forgets the zone otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _when(**kwargs: Any) -> Any:
    return Field(sa_type=UTCDateTime, **kwargs)


def _sync_seq() -> Any:
    """Where a row comes in the order rows become visible, set by the database (migration
    0012): the writing transaction's id on PostgreSQL, a counter on SQLite. The API pages
    on it; never written by the application."""
    return Field(
        default=None, sa_type=BigInteger, nullable=True,
        sa_column_kwargs={"server_default": FetchedValue()},
    )  # fmt: skip


class ServerState(SQLModel, table=True):
    __tablename__ = "server_state"
    key: str = Field(primary_key=True)
    value: str


class Account(SQLModel, table=True):
    __tablename__ = "account"
    id: int | None = Field(default=None, primary_key=True)
    slug: str = Field(unique=True)
    name: str
    settings_json: str = Field(default="{}", sa_type=Text)
    fallback_owner_id: int | None = None
    token_generation: int = 1
    created_at: datetime = _when(default_factory=utcnow)


class AccountDomain(SQLModel, table=True):
    __tablename__ = "account_domain"
    __table_args__ = (UniqueConstraint("account_id", "domain"),)
    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id", index=True)
    domain: str


class CaptureAddress(SQLModel, table=True):
    __tablename__ = "capture_address"
    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id", index=True)
    kind: str
    address: str = Field(unique=True)
    created_at: datetime = _when(default_factory=utcnow)
    retired_at: datetime | None = _when(default=None, nullable=True)


class User(SQLModel, table=True):
    __tablename__ = "app_user"
    __table_args__ = (UniqueConstraint("account_id", "email"),)
    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id", index=True)
    email: str
    name: str | None = None
    sharing: str = "everything"
    created_at: datetime = _when(default_factory=utcnow)


class UserAddress(SQLModel, table=True):
    __tablename__ = "user_address"
    __table_args__ = (
        UniqueConstraint("user_id", "address"),
        Index("ix_user_address_account_address", "account_id", "address"),
    )
    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id")
    user_id: int = Field(foreign_key="app_user.id", index=True)
    address: str
    kind: str


class NeverLog(SQLModel, table=True):
    __tablename__ = "never_log"
    __table_args__ = (UniqueConstraint("account_id", "pattern"),)
    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id")
    pattern: str
    created_at: datetime = _when(default_factory=utcnow)


class Tombstone(SQLModel, table=True):
    __tablename__ = "tombstone"
    __table_args__ = (PrimaryKeyConstraint("account_id", "address_hash"),)
    account_id: int = Field(foreign_key="account.id")
    address_hash: str
    created_at: datetime = _when(default_factory=utcnow)


class Company(SQLModel, table=True):
    __tablename__ = "company"
    __table_args__ = (UniqueConstraint("account_id", "domain"),)
    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id")
    domain: str
    name: str | None = None
    created_at: datetime = _when(default_factory=utcnow)


class Contact(SQLModel, table=True):
    __tablename__ = "contact"
    __table_args__ = (
        UniqueConstraint("account_id", "primary_address"),
        Index("ix_contact_account_created", "account_id", "created_at", "id"),
        Index("ix_contact_account_sync", "account_id", "sync_seq", "created_at", "id"),  # API
    )
    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id")
    primary_address: str
    name: str | None = None
    company_id: int | None = Field(default=None, foreign_key="company.id")
    created_by: str = "capture"
    created_at: datetime = _when(default_factory=utcnow)
    deleted_at: datetime | None = _when(default=None, nullable=True)
    # Profile fields (read from signatures or set by a person) and who set each one:
    # JSON {"field": "capture"|"person"}; a field a person set is never overwritten by capture.
    job_title: str | None = None
    company_name: str | None = None
    phone: str | None = None  # E.164
    website: str | None = None
    field_sources: str = Field(default="{}", sa_type=Text)
    sync_seq: int | None = _sync_seq()


class ContactSuggestion(SQLModel, table=True):
    """A signature field not sure enough to fill a contact: an admin accepts or rejects it."""

    __tablename__ = "contact_suggestion"
    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id")
    contact_id: int = Field(foreign_key="contact.id", index=True)
    field: str
    value: str
    confidence: float
    engagement_id: str | None = None  # where it was read; no foreign key (purges)
    status: str = "pending"  # pending | accepted | rejected
    created_at: datetime = _when(default_factory=utcnow)
    decided_at: datetime | None = _when(default=None, nullable=True)


class ContactAddress(SQLModel, table=True):
    """Additional addresses; the primary one lives on the contact row (unique per account)."""

    __tablename__ = "contact_address"
    __table_args__ = (
        UniqueConstraint("contact_id", "address"),
        Index("ix_contact_address_account_address", "account_id", "address"),
    )
    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id")
    contact_id: int = Field(foreign_key="contact.id")
    address: str


class Deal(SQLModel, table=True):
    __tablename__ = "deal"
    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id", index=True)
    name: str
    stage: str = "open"
    is_open: bool = True
    close_date: datetime | None = _when(default=None, nullable=True)
    created_at: datetime = _when(default_factory=utcnow)


class DealContact(SQLModel, table=True):
    __tablename__ = "deal_contact"
    deal_id: int = Field(foreign_key="deal.id", primary_key=True)
    contact_id: int = Field(foreign_key="contact.id", primary_key=True, index=True)


class Engagement(SQLModel, table=True):
    __tablename__ = "engagement"
    __table_args__ = (
        UniqueConstraint("account_id", "dedupe_key"),
        Index("ix_engagement_account_thread", "account_id", "thread_id"),
        Index("ix_engagement_account_message_id", "account_id", "message_id"),
        # Reply threading looks Message-IDs up in any letter case (migration 0011).
        Index("ix_engagement_account_message_id_lower", "account_id", text("lower(message_id)")),
        Index("ix_engagement_account_subject_hash", "account_id", "subject_hash"),
        Index("ix_engagement_account_created", "account_id", "created_at", "id"),
        Index("ix_engagement_account_sync", "account_id", "sync_seq", "created_at", "id"),  # API
    )
    id: str = Field(primary_key=True)
    account_id: int = Field(foreign_key="account.id")
    dedupe_key: str
    content_hash: str
    kind: str
    direction: str
    owner_user_id: int = Field(foreign_key="app_user.id")
    subject: str = Field(default="", sa_type=Text)
    occurred_at: datetime | None = _when(default=None, nullable=True)
    message_id: str | None = None
    in_reply_to: str | None = None
    references_text: str = Field(default="", sa_type=Text)
    from_address: str | None = None
    from_name: str | None = None
    body_text: str = Field(default="", sa_type=Text)
    note: str | None = Field(default=None, sa_type=Text, nullable=True)
    thread_id: str
    sharing: str = "everything"
    created_at: datetime = _when(default_factory=utcnow)
    subject_hash: str | None = None  # of the normalised subject: the reply subject fallback
    sync_seq: int | None = _sync_seq()


class ThreadMessage(SQLModel, table=True):
    """Every Message-ID a logged engagement knows (its own, References, a forward's own) →
    the thread, so reply capture finds a reply to any of them. First writer wins."""

    __tablename__ = "thread_message"
    __table_args__ = (PrimaryKeyConstraint("account_id", "message_id"),)
    account_id: int = Field(foreign_key="account.id")
    message_id: str  # lower-case
    thread_id: str
    engagement_id: str  # no foreign key: purging an engagement must not trip on it


class Participant(SQLModel, table=True):
    __tablename__ = "participant"
    id: int | None = Field(default=None, primary_key=True)
    engagement_id: str = Field(foreign_key="engagement.id", index=True)
    role: str  # to | cc
    position: int
    address: str
    name: str | None = None


class EngagementContact(SQLModel, table=True):
    __tablename__ = "engagement_contact"
    engagement_id: str = Field(foreign_key="engagement.id", primary_key=True)
    contact_id: int = Field(foreign_key="contact.id", primary_key=True, index=True)


class EngagementCompany(SQLModel, table=True):
    __tablename__ = "engagement_company"
    engagement_id: str = Field(foreign_key="engagement.id", primary_key=True)
    company_id: int = Field(foreign_key="company.id", primary_key=True)


class EngagementDeal(SQLModel, table=True):
    __tablename__ = "engagement_deal"
    engagement_id: str = Field(foreign_key="engagement.id", primary_key=True)
    deal_id: int = Field(foreign_key="deal.id", primary_key=True)


class Blob(SQLModel, table=True):
    """Attachment content, addressed by its SHA-256: one copy however often it is sent."""

    __tablename__ = "blob"
    sha256: str = Field(primary_key=True)
    size: int
    data: bytes = Field(sa_type=LargeBinary)


class AttachmentRow(SQLModel, table=True):
    __tablename__ = "attachment"
    id: int | None = Field(default=None, primary_key=True)
    engagement_id: str = Field(foreign_key="engagement.id", index=True)
    position: int
    filename: str | None = None
    content_type: str
    size: int
    sha256: str = Field(foreign_key="blob.sha256")


class CaptureEvent(SQLModel, table=True):
    __tablename__ = "capture_event"
    __table_args__ = (
        Index("ix_capture_event_account_received", "account_id", "received_at"),
        Index("ix_capture_event_account_header_message_id", "account_id", "header_message_id"),
        Index("ix_capture_event_archive_key", "archive_key"),
        Index("ix_capture_event_account_sync", "account_id", "sync_seq", "received_at", "id"),
        # Partial: only the few events of messages without a Message-ID have raw_sha256.
        Index(
            "ix_capture_event_account_raw_sha256",
            "account_id",
            "raw_sha256",
            sqlite_where=text("raw_sha256 IS NOT NULL"),
            postgresql_where=text("raw_sha256 IS NOT NULL"),
        ),
    )
    id: str = Field(primary_key=True)
    account_id: int | None = Field(default=None, foreign_key="account.id")
    received_at: datetime = _when(default_factory=utcnow)
    protocol: str
    mail_from: str
    rcpt: str
    kind: str | None = None
    message_id: str | None = None
    subject: str = Field(default="", sa_type=Text)
    decision: str
    reason: str
    smtp_reply: str
    engagement_id: str | None = None
    trace_json: str = Field(default="[]", sa_type=Text)
    warnings_json: str = Field(default="[]", sa_type=Text)
    # AuthReport.as_dict(): mode, outcome, and the Authentication-Results structure.
    authentication_json: str | None = Field(default=None, sa_type=Text, nullable=True)
    # The received message's own From and Message-ID (not a forward's original): what
    # `events --sender` and `ingest`'s resume check look for, also when nothing was logged.
    header_from: str | None = None
    header_message_id: str | None = None
    archive_key: str | None = None  # SHA-256 of the raw message in archive_dir, when on
    sync_seq: int | None = _sync_seq()
    # SHA-256 of the raw message when it has no Message-ID (header_message_id is None): what
    # `ingest`'s resume check recognises such a message by (migration 0013).
    raw_sha256: str | None = None


class NoticeSent(SQLModel, table=True):
    """One notice per message, and the per-rep rate limit, durable across restarts and nodes."""

    __tablename__ = "notice_sent"
    __table_args__ = (
        UniqueConstraint("account_id", "message_key"),
        Index("ix_notice_sent_user_sent", "user_id", "sent_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id")
    user_id: int = Field(foreign_key="app_user.id")
    message_key: str
    reason: str
    sent_at: datetime = _when(default_factory=utcnow)
