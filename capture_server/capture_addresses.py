"""Capture addresses: unguessable per account, derived from the server secret."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

from capture_server.pipeline.message import Kind

TOKEN_CHARS = 16  # base32 characters: 80 bits
_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$")


def valid_slug(slug: str) -> bool:
    return bool(_SLUG.match(slug))


def capture_token(secret: str, slug: str, kind: Kind, generation: int) -> str:
    """HMAC of the account, kind and generation: one address reveals nothing of another."""
    message = f"{slug}\x1f{kind.value}\x1f{generation}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.b32encode(digest).decode("ascii").lower()[:TOKEN_CHARS]


def capture_address(secret: str, slug: str, kind: Kind, generation: int, domain: str) -> str:
    return f"{slug}-{kind.value}-{capture_token(secret, slug, kind, generation)}@{domain}"


def address_key(address: str) -> str:
    """The capture address a recipient names: lower case, a subaddress (RFC 5233 `+tag`, which
    Postfix's recipient_delimiter passes through) removed. Issued addresses hold no "+", so a
    tag never reaches another address, and a rep's own filing tag does not bounce the mail."""
    local, at, domain = address.strip().lower().rpartition("@")
    return f"{local.partition('+')[0]}{at}{domain}" if at else domain
