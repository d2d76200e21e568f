"""Webhooks: endpoints per account, the durable outbox, and the worker that empties it.

Outbox rows are written by `enqueue` inside the transaction of the event they tell (see
store/enrichment.py), so a rolled-back write sends nothing and a committed one is never
lost. The worker claims due rows, POSTs them signed, and retries with exponential backoff
up to a bounded number of attempts; receivers dedupe on the Idempotency-Key header.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import json
import secrets
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from sqlalchemy import delete, update
from sqlmodel import Session, col, select

from capture_server.logging import get_logger
from capture_server.pipeline.message import CaptureTarget
from capture_server.store import cursor_sql
from capture_server.store.cache import VERSION_QUERY
from capture_server.store.capture_sql import dialect_of
from capture_server.store.integration_models import Webhook, WebhookDelivery
from capture_server.store.models import utcnow

if TYPE_CHECKING:
    from capture_server.config import Settings
    from capture_server.store.repositories import Store

log = get_logger("webhooks")

ENGAGEMENT_CREATED = "engagement.created"
CONTACT_CREATED = "contact.created"
MESSAGE_REJECTED = "message.rejected"
EVENTS = (ENGAGEMENT_CREATED, CONTACT_CREATED, MESSAGE_REJECTED)
MAX_BACKOFF_SECONDS = 3600.0
CLAIM_BATCH = 20


def _store_error(message: str) -> Exception:
    from capture_server.store.repositories import StoreError

    return StoreError(message)


def _delivery_id() -> str:
    return f"whd_{int(time.time() * 1000):011x}{secrets.token_hex(5)}"


def check_url(url: str) -> str:
    """HTTPS anywhere; plain HTTP only to loopback (a receiver on the same host, tests)."""
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("https", "http") or not host:
        raise _store_error(f"{url!r} is not an http(s) URL")
    if parts.scheme == "http" and not _loopback(host):
        raise _store_error("webhook URLs use https (plain http only to 127.0.0.1, ::1, localhost)")
    if parts.username or parts.password:
        raise _store_error("put no credentials in a webhook URL: requests are signed instead")
    return url.strip()


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The X-Capture-Signature value: HMAC-SHA256 over "<timestamp>." + body."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify(secret: str, header: str, body: bytes, tolerance: float = 300.0) -> bool:
    """What a receiver does (also used by the tests): recompute, compare, check the age."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    fresh = abs(time.time() - timestamp) <= tolerance
    return fresh and hmac.compare_digest(expected, fields.get("v1", ""))


# -- admin commands -------------------------------------------------------------------------


def add_webhook(store: Store, slug: str, url: str, events: list[str]) -> dict[str, Any]:
    wanted = list(dict.fromkeys(e.strip().lower() for e in events)) or list(EVENTS)
    unknown = [e for e in wanted if e not in EVENTS]
    if unknown:
        raise _store_error(f"unknown event {unknown[0]!r}; events: {', '.join(EVENTS)}")
    url = check_url(url)
    account_id = store.account_id(slug)
    secret = "whsec_" + secrets.token_urlsafe(32)
    with store._write() as session:
        row = Webhook(account_id=account_id, url=url, secret=secret, events=" ".join(wanted))
        session.add(row)
        session.flush()
        # The secret is shown once, here: the receiver needs it to check signatures.
        return {"id": row.id, "url": url, "events": wanted, "secret": secret}


def list_webhooks(store: Store, slug: str) -> list[dict[str, Any]]:
    account_id = store.account_id(slug)
    with store._read() as session:
        rows = session.exec(
            select(Webhook).where(Webhook.account_id == account_id).order_by(col(Webhook.id))
        )
        return [
            {"id": row.id, "url": row.url, "events": row.events.split(),
             "created_at": row.created_at.isoformat()}
            for row in rows
        ]  # fmt: skip


def remove_webhook(store: Store, slug: str, which: str) -> int:
    """Remove by id or URL, with its delivery log; returns how many webhooks went."""
    account_id = store.account_id(slug)
    with store._write() as session:
        query = select(Webhook).where(Webhook.account_id == account_id)
        if which.isdigit():
            query = query.where(Webhook.id == int(which))
        else:
            query = query.where(Webhook.url == which.strip())
        rows = session.exec(query).all()
        if not rows:
            raise _store_error(f"no webhook {which!r} in account {slug!r}")
        ids = [row.id for row in rows]
        session.execute(delete(WebhookDelivery).where(col(WebhookDelivery.webhook_id).in_(ids)))
        session.execute(delete(Webhook).where(col(Webhook.id).in_(ids)))
        return len(ids)


def deliveries(
    store: Store, slug: str, status: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    account_id = store.account_id(slug)
    with store._read() as session:
        query = select(WebhookDelivery, Webhook.url).join(
            Webhook, col(Webhook.id) == WebhookDelivery.webhook_id
        )
        query = query.where(WebhookDelivery.account_id == account_id)
        if status:
            query = query.where(WebhookDelivery.status == status)
        rows = session.exec(
            query.order_by(col(WebhookDelivery.created_at).desc(), col(WebhookDelivery.id).desc())
            .limit(limit)
        )  # fmt: skip
        return [_delivery_json(row, url) for row, url in rows]


def _delivery_json(row: WebhookDelivery, url: str) -> dict[str, Any]:
    return {
        "id": row.id,
        "webhook_id": row.webhook_id,
        "url": url,
        "event": row.event,
        "idempotency_key": row.idempotency_key,
        "status": row.status,
        "attempts": row.attempts,
        "last_status": row.last_status,
        "last_error": row.last_error,
        "next_attempt_at": row.next_attempt_at.isoformat() if row.status == "pending" else None,
        "created_at": row.created_at.isoformat(),
        "delivered_at": row.delivered_at.isoformat() if row.delivered_at else None,
    }


def retry(store: Store, slug: str, ids: list[str]) -> int:
    """Failed deliveries (all, or those named) go back to pending with fresh attempts."""
    account_id = store.account_id(slug)
    with store._write() as session:
        statement = update(WebhookDelivery).where(
            col(WebhookDelivery.account_id) == account_id,
            col(WebhookDelivery.status) != "delivered",
        )
        if ids:
            statement = statement.where(col(WebhookDelivery.id).in_(ids))
        else:
            statement = statement.where(col(WebhookDelivery.status) == "failed")
        result = session.execute(
            statement.values(status="pending", attempts=0, next_attempt_at=utcnow())
        )
        return int(getattr(result, "rowcount", 0) or 0)


# -- the outbox -----------------------------------------------------------------------------


Hook = tuple[int, frozenset[str]]  # a webhook's id and the events it subscribed to


def hooks_of(session: Session, account_id: int) -> list[Hook]:
    """The account's webhooks, read now (cached with the account: CachedHooks)."""
    connection = session.connection()
    rows = cursor_sql.fetch(connection, dialect_of(connection).webhooks_of_account,
                            {"account_id": account_id})  # fmt: skip
    return [(hook_id, frozenset(events.split())) for hook_id, events in rows]


@dataclass(frozen=True)
class CachedHooks:
    """An account's webhooks as the Store caches them, valid at this account version (the
    one its message was decided under: CaptureTarget.account_version)."""

    version: int
    hooks: tuple[Hook, ...]


def hooks_now(session: Session, account_id: int, cached: CachedHooks | None) -> list[Hook]:
    """The webhooks to write outbox rows for, in the message's write transaction.

    None cached: read them. None at the cached version: none, without a statement; one added
    since then is missed, as it would be had the message come a moment earlier. Some: one
    may have been removed since, and an outbox row for it would fail the write (foreign key)
    or, its id re-used (SQLite re-uses the highest rowid), reach another webhook. So the
    version is read again in this transaction (SQLite: no other writer commits before it
    ends) and the list with it if it moved. PostgreSQL: a removal committing between this
    read and the outbox insert fails the insert on the foreign key, as with a fresh read.
    """
    if cached is None:
        return hooks_of(session, account_id)
    if not cached.hooks:
        return []
    rows = cursor_sql.fetch(session.connection(), VERSION_QUERY, {"account_id": account_id})
    if (int(rows[0][0]) if rows else 0) == cached.version:
        return list(cached.hooks)
    return hooks_of(session, account_id)


def wanted(hooks: list[Hook], event: str) -> bool:
    return any(event in events for _, events in hooks)


def enqueue(
    session: Session,
    target: CaptureTarget,
    event: str,
    subject_id: str,
    data: dict[str, Any],
    hooks: list[Hook] | None = None,
) -> None:
    """One outbox row per subscribed webhook, in the caller's transaction."""
    if hooks is None:
        hooks = hooks_of(session, target.account_id)
    key = f"{event}:{subject_id}"
    now = utcnow()
    for hook_id, events in hooks:
        if event not in events:
            continue
        exists = session.exec(
            select(WebhookDelivery.id).where(
                WebhookDelivery.webhook_id == hook_id, WebhookDelivery.idempotency_key == key
            )
        ).first()
        if exists is not None:
            continue  # the same event told twice (a concurrent capture): one delivery
        body = {"id": key, "type": event, "account": target.account_slug,
                "created_at": now.isoformat(), "data": data}  # fmt: skip
        session.add(
            WebhookDelivery(
                id=_delivery_id(),
                webhook_id=hook_id,
                account_id=target.account_id,
                event=event,
                idempotency_key=key,
                payload_json=json.dumps(body, ensure_ascii=False, default=str),
                next_attempt_at=now,
                created_at=now,
            )
        )


@dataclass(frozen=True)
class Due:
    id: str
    url: str
    secret: str
    event: str
    key: str
    body: bytes
    attempts: int


def claim_due(store: Store, lease_seconds: float) -> list[Due]:
    """Pending rows whose time has come, each pushed lease_seconds ahead so that another
    worker (node) skips it while this one sends; the conditional update is the lock."""
    now = utcnow()
    claimed = []
    with store._write() as session:
        rows = session.exec(
            select(WebhookDelivery, Webhook)
            .join(Webhook, col(Webhook.id) == WebhookDelivery.webhook_id)
            .where(WebhookDelivery.status == "pending", col(WebhookDelivery.next_attempt_at) <= now)
            .order_by(col(WebhookDelivery.next_attempt_at), col(WebhookDelivery.id))
            .limit(CLAIM_BATCH)
        ).all()
        for row, hook in rows:
            result = session.execute(
                update(WebhookDelivery)
                .where(col(WebhookDelivery.id) == row.id,
                       col(WebhookDelivery.next_attempt_at) == row.next_attempt_at,
                       col(WebhookDelivery.status) == "pending")
                .values(next_attempt_at=now + timedelta(seconds=lease_seconds))
            )  # fmt: skip
            if getattr(result, "rowcount", 0) == 1:
                claimed.append(
                    Due(row.id, hook.url, hook.secret, row.event, row.idempotency_key,
                        row.payload_json.encode(), row.attempts)
                )  # fmt: skip
    return claimed


def finish(
    store: Store, due: Due, status: int | None, error: str | None, settings: Settings
) -> str:
    """Record one attempt; returns the delivery's new status."""
    now = utcnow()
    attempts = due.attempts + 1
    values: dict[str, Any] = {"attempts": attempts, "last_status": status, "last_error": error}
    if status is not None and 200 <= status < 300:
        values.update(status="delivered", delivered_at=now, last_error=None)
    elif attempts >= settings.webhook_max_attempts:
        values.update(status="failed")
    else:
        delay = min(settings.webhook_backoff_seconds * 2 ** (attempts - 1), MAX_BACKOFF_SECONDS)
        values.update(next_attempt_at=now + timedelta(seconds=delay))
    with store._write() as session:
        session.execute(
            update(WebhookDelivery).where(col(WebhookDelivery.id) == due.id).values(**values)
        )
    return str(values.get("status", "pending"))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 3xx is an answer, not a new address to post the event to


_OPENER = urllib.request.build_opener(_NoRedirect)


def post(due: Due, timeout: float) -> tuple[int | None, str | None]:
    """POST one delivery; (HTTP status or None, error text or None). Blocking: run in a thread."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "capture-server-webhooks",
        "X-Capture-Event": due.event,
        "X-Capture-Delivery": due.id,
        "Idempotency-Key": due.key,
        "X-Capture-Signature": sign(due.secret, int(time.time()), due.body),
    }
    # The scheme is http(s), checked when the webhook was added (check_url).
    request = urllib.request.Request(  # noqa: S310
        due.url, data=due.body, headers=headers, method="POST"
    )
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            response.read(65536)
            return int(response.status), None
    except urllib.error.HTTPError as error:
        return int(error.code), f"HTTP {error.code}"
    except (OSError, ValueError) as error:
        return None, f"{type(error).__name__}: {error}"[:500]


class WebhookWorker:
    """The daemon's background sender: polls the outbox, sends, records, backs off."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="webhooks")

    async def stop(self, grace: float) -> None:
        self._stopping.set()
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), max(grace, 0.1))
        except TimeoutError:
            self._task.cancel()  # a claimed row is retried when its lease runs out

    async def _run(self) -> None:
        settings = self.settings
        lease = settings.webhook_timeout_seconds * 2 + 5
        while not self._stopping.is_set():
            try:
                due = await asyncio.to_thread(claim_due, self.store, lease)
                for item in due:
                    status, error = await asyncio.to_thread(
                        post, item, settings.webhook_timeout_seconds
                    )
                    outcome = await asyncio.to_thread(
                        finish, self.store, item, status, error, settings
                    )
                    log.info("webhook_attempt", delivery=item.id, webhook_event=item.event,
                             http_status=status, error=error, outcome=outcome)  # fmt: skip
            except Exception:
                # The store may be down: the rows stay in the outbox for the next round.
                log.warning("webhook_round_failed", exc_info=True)
                due = []
            if len(due) < CLAIM_BATCH:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), settings.webhook_poll_seconds)
