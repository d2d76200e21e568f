"""Tables of enrichment and integration: extractors and their values, webhooks, the outbox."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from capture_server.store.models import UTCDateTime, utcnow


class ExtractorRow(SQLModel, table=True):
    __tablename__ = "extractor"
    __table_args__ = (UniqueConstraint("account_id", "name"),)
    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id")
    name: str
    pattern: str = Field(sa_type=Text)
    created_at: datetime = Field(sa_type=UTCDateTime, default_factory=utcnow)


class EngagementValue(SQLModel, table=True):
    """One value an extractor found in a logged email."""

    __tablename__ = "engagement_value"
    id: int | None = Field(default=None, primary_key=True)
    engagement_id: str = Field(foreign_key="engagement.id", index=True)
    name: str
    position: int
    value: str = Field(sa_type=Text)


class Webhook(SQLModel, table=True):
    __tablename__ = "webhook"
    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id", index=True)
    url: str = Field(sa_type=Text)
    secret: str
    events: str  # space-separated event names
    created_at: datetime = Field(sa_type=UTCDateTime, default_factory=utcnow)


class WebhookDelivery(SQLModel, table=True):
    """The outbox: written in the transaction of the event it tells, sent by the daemon."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        UniqueConstraint("webhook_id", "idempotency_key"),
        Index("ix_webhook_delivery_status_next", "status", "next_attempt_at"),
    )
    id: str = Field(primary_key=True)
    webhook_id: int = Field(foreign_key="webhook.id")
    account_id: int = Field(foreign_key="account.id", index=True)
    event: str
    idempotency_key: str
    payload_json: str = Field(sa_type=Text)
    status: str = "pending"  # pending | delivered | failed
    attempts: int = 0
    next_attempt_at: datetime = Field(sa_type=UTCDateTime, default_factory=utcnow)
    last_status: int | None = None
    last_error: str | None = Field(default=None, sa_type=Text, nullable=True)
    created_at: datetime = Field(sa_type=UTCDateTime, default_factory=utcnow)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)


class ApiToken(SQLModel, table=True):
    """A bearer token of the read API; the token itself is shown once and never stored."""

    __tablename__ = "api_token"
    id: str = Field(primary_key=True)
    account_id: int = Field(foreign_key="account.id", index=True)
    name: str
    token_hash: str = Field(unique=True)  # SHA-256 hex of the token
    created_at: datetime = Field(sa_type=UTCDateTime, default_factory=utcnow)
    last_used_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
