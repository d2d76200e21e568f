"""policy.default with a bounded cache of parsed header values (issue 10: parse CPU).

The standard library parses a header each time it is read: finding the body and the
attachments reads each part's Content-Type about ten times, and the thread look-up, the
received keys and the parse stage each read From, Subject and Message-ID again. Header objects
are immutable, so one parse per distinct (name, value) serves them all; common values
("text/plain; charset=utf-8") are shared across messages too. Long values are not kept, and
the cache is small: a parsed header holds its whole token tree.
"""

from __future__ import annotations

from email import policy
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.parser import BytesParser
from functools import lru_cache
from typing import Any

from capture_server import email_boundary, mimetree

_LONGEST_CACHED = 1000
_ENTRIES = 64  # ~11 KB each: enough for the messages in flight and the common values
_HEADER_CLASSES: dict[tuple[type, type], type[BaseHeader]] = {}
# Headers of message identifiers, matched as written: _readable leaves them alone.
_IDENTIFIERS = frozenset({"message-id", "in-reply-to", "references", "content-id"})


class _CachedHeaderRegistry(HeaderRegistry):
    def __getitem__(self, name: str) -> type[BaseHeader]:
        # The standard library builds a new class on every call (type(): ~20 us, and garbage
        # with cycles): build it once per registered class (bounded: the registry's classes).
        cls = self.registry.get(name.lower(), self.default_class)
        key = (cls, self.base_class)
        found = _HEADER_CLASSES.get(key)
        if found is None:
            found = _HEADER_CLASSES.setdefault(key, super().__getitem__(name))
        return found

    def __call__(self, name: str, value: Any) -> BaseHeader:
        if (
            isinstance(value, str)
            and not (value.isascii() and "=?" not in value)
            and name.lower() not in _IDENTIFIERS
        ):
            value = _readable(value)  # raw bytes and encoded words read as the body text is
        if not isinstance(value, str) or len(value) > _LONGEST_CACHED:
            return super().__call__(name, value)
        return _parsed(self, name, value)  # the name as written: folding prints it


def _readable(value: str) -> str:
    # Imported here: capture_server.pipeline (its __init__ imports the stages) imports this.
    from capture_server.pipeline.charsets import header_value

    return header_value(value)


@lru_cache(maxsize=_ENTRIES)
def _parsed(registry: HeaderRegistry, name: str, value: str) -> BaseHeader:
    return HeaderRegistry.__call__(registry, name, value)


POLICY = policy.default.clone(header_factory=_CachedHeaderRegistry())
email_boundary.install()  # every parse of the daemon comes through here: no regex per boundary


@lru_cache(maxsize=64)
def parsed_header_section(section: bytes) -> EmailMessage:
    """A header section parsed once for the thread look-up and the received keys (read it,
    never change it: the same object is handed to every caller)."""
    message = mimetree.build(section, POLICY, headers_only=True)
    if message is None:
        message = BytesParser(policy=POLICY).parsebytes(section, headersonly=True)
    assert isinstance(message, EmailMessage)
    return message
