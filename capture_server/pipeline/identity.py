"""Pure identity helpers shared by the pipeline and the store."""

from __future__ import annotations

import hashlib
import unicodedata

from capture_server.pipeline.canonical import ascii_address, canonical_address
from capture_server.pipeline.message import Email


def tombstone_hash(account_id: int, address: str) -> str:
    """Hash kept after a permanent deletion: enough to refuse re-creation, nothing more."""
    return _hashed(account_id, canonical_address(address))


def is_tombstoned(tombstones: frozenset[str], account_id: int, address: str) -> bool:
    """Permanently deleted, under the address's one form or (an internationalised domain,
    deleted before addresses had one form) the ASCII form its hash was taken of then."""
    if tombstone_hash(account_id, address) in tombstones:
        return True
    legacy = ascii_address(address)
    return legacy is not None and _hashed(account_id, legacy) in tombstones


def _hashed(account_id: int, key: str) -> str:
    return hashlib.sha256(f"{account_id}:{key}".encode()).hexdigest()


def content_hash(email: Email) -> str:
    """Stable over the fields a person sees, so relayed copies of one email hash alike."""
    body = " ".join(unicodedata.normalize("NFC", email.body_text).split())
    parts = [
        email.sender.key if email.sender else "",
        ",".join(sorted(m.key for m in email.to)),
        ",".join(sorted(m.key for m in email.cc)),
        " ".join(email.subject.split()),
        email.occurred_at.isoformat() if email.occurred_at else "",
        body,
    ]
    return hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


def dedupe_key(email: Email, digest: str) -> str:
    if email.message_id:
        return "mid:" + email.message_id.strip().lower()
    return "sha:" + digest


def thread_root_key(email: Email) -> str:
    """The first message of the thread as this email knows it (References[0] is the root)."""
    root = (
        (email.references[0] if email.references else None)
        or email.in_reply_to
        or email.message_id
        or content_hash(email)
    )
    return "thr_" + hashlib.sha256(root.strip().lower().encode("utf-8")).hexdigest()[:20]
