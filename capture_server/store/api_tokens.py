"""Bearer tokens of the read API: issued once, kept as a SHA-256 hash, revoked not deleted."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from typing import Any

from sqlmodel import col, select

from capture_server.store.integration_models import ApiToken
from capture_server.store.models import utcnow
from capture_server.store.repositories import Store, StoreError, new_id

PREFIX = "cs_"
# last_used_at is informative: written at most this often per token, not on every request.
TOUCH_EVERY = timedelta(minutes=1)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _token_json(row: ApiToken) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "created_at": row.created_at.isoformat(),
        "last_used_at": row.last_used_at.isoformat() if row.last_used_at else None,
        "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
    }


def create_token(store: Store, slug: str, name: str = "") -> dict[str, Any]:
    """A new token; the returned "token" is the only copy there will ever be."""
    token = PREFIX + secrets.token_urlsafe(24)  # 32 url-safe characters
    with store._write() as session:
        account = store._account(session, slug)
        assert account.id is not None
        row = ApiToken(
            id=new_id("tok"),
            account_id=account.id,
            name=name.strip() or "api",
            token_hash=token_hash(token),
        )
        session.add(row)
        session.flush()
        return {**_token_json(row), "token": token}


def list_tokens(store: Store, slug: str) -> list[dict[str, Any]]:
    with store._read() as session:
        account = store._account(session, slug)
        rows = session.exec(
            select(ApiToken)
            .where(ApiToken.account_id == account.id)
            .order_by(col(ApiToken.created_at), col(ApiToken.id))
        ).all()
        return [_token_json(row) for row in rows]


def revoke_token(store: Store, slug: str, token_id: str) -> dict[str, Any]:
    with store._write() as session:
        account = store._account(session, slug)
        row = session.get(ApiToken, token_id.strip())
        if row is None or row.account_id != account.id:
            raise StoreError(f"no API token {token_id} in account {account.slug!r}")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
            session.add(row)
        return _token_json(row)


def authenticate(store: Store, token: str) -> int | None:
    """The account a live token belongs to, or None (unknown, malformed or revoked)."""
    if not token.startswith(PREFIX) or len(token) > 200:
        return None
    digest = token_hash(token)
    with store._read() as session:
        row = session.exec(select(ApiToken).where(ApiToken.token_hash == digest)).first()
        if row is None or row.revoked_at is not None:
            return None
        account_id, last_used = row.account_id, row.last_used_at
    now = utcnow()
    if last_used is None or now - last_used >= TOUCH_EVERY:
        with store._write() as session:
            touched = session.get(ApiToken, row.id)
            if touched is not None:
                touched.last_used_at = now
                session.add(touched)
    return account_id
