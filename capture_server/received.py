"""The received message's own From and Message-ID, read from its header section alone.

Kept on every capture event (a forward's engagement describes the original instead), so
`events --sender` finds the From and `ingest` recognises a message it has already stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage

from capture_server.email_policy import parsed_header_section
from capture_server.pipeline.parse import leading_header_section, mailboxes_of, message_ids


@dataclass(frozen=True)
class ReceivedKeys:
    message_id: str | None
    from_address: str | None  # lower-case


def received_keys(raw: bytes) -> ReceivedKeys:
    message = parsed_header_section(leading_header_section(raw))
    return ReceivedKeys(_message_id(message), _from(message))


def _message_id(message: EmailMessage) -> str | None:
    try:
        value = str(message.get("message-id", "") or "").strip()
    except Exception:  # a malformed header is no key, never a crash
        return None
    token = next(message_ids(value), None) or value or None
    return token[:998] if token else None


def _from(message: EmailMessage) -> str | None:
    try:
        header = message.get("from")
        found = next(mailboxes_of(getattr(header, "addresses", ())), None)
    except Exception:
        return None
    return found.address.lower()[:320] if found else None
