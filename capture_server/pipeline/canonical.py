"""One form for an address or a domain, whatever form the mail or the admin wrote it in.

An internationalised domain comes two ways: in Unicode (`müller.de`, from SMTPUTF8 clients
and from admins typing it) and in IDNA's ASCII form (`xn--mller-kva.de`, from most mail
clients). They are one domain: a rep of such a company was "no user" (550) when the client
wrote the other form, and a contact came twice. Addresses and domains are matched on,
stored and shown in the Unicode form, NFC, lower case. Plain ASCII costs two string tests.
"""

from __future__ import annotations

import functools
import unicodedata

ACE_PREFIX = "xn--"  # IDNA's ASCII-compatible encoding of a label


def canonical_address(address: str) -> str:
    """Lower case; the domain's IDNA labels in Unicode; NFC."""
    key = address.strip().lower()
    if key.isascii() and ACE_PREFIX not in key:
        return key
    return _unicode_address(key)


def canonical_domain(domain: str) -> str:
    """A domain as canonical_address writes its domain part."""
    key = domain.strip().lower()
    if key.isascii() and ACE_PREFIX not in key:
        return key
    return _unicode_domain(key)


def canonical_pattern(pattern: str) -> str:
    """A never-log pattern (an address, or a domain) in the same form."""
    return canonical_address(pattern) if "@" in pattern else canonical_domain(pattern)


def ascii_domain(domain: str) -> str | None:
    """The ASCII form of a domain (each non-ASCII label punycoded, as IDNA 2008 writes it,
    ß kept); None when a label cannot be encoded."""
    try:
        return ".".join(
            label if label.isascii() else ACE_PREFIX + label.encode("punycode").decode("ascii")
            for label in canonical_domain(domain).split(".")
        )
    except UnicodeError:
        return None


def ascii_address(address: str) -> str | None:
    """The address with its domain in IDNA ASCII, when that differs from the canonical form:
    how one was stored before (a permanent deletion's hash was taken of it)."""
    local, at, domain = canonical_address(address).rpartition("@")
    if not at or domain.isascii():
        return None
    encoded = ascii_domain(domain)
    return f"{local}@{encoded}" if encoded else None


def _printable(label: str) -> bool:
    """No control, format, unassigned or separator characters: "xn--abc" is valid punycode
    for three C1 controls, and no domain's label."""
    return not any(unicodedata.category(c)[0] in "CZ" for c in label)


@functools.lru_cache(maxsize=4096)
def _unicode_address(key: str) -> str:
    local, at, domain = key.rpartition("@")
    if not at:
        return unicodedata.normalize("NFC", key)
    return f"{unicodedata.normalize('NFC', local)}@{_unicode_domain(domain)}"


@functools.lru_cache(maxsize=4096)
def _unicode_domain(key: str) -> str:
    labels = []
    for label in key.split("."):
        if label.startswith(ACE_PREFIX) and label.isascii():
            # Punycode itself, not Python's "idna" codec: that is IDNA 2003, which refuses
            # labels IDNA 2008 allows (xn--strae-oqa, straße).
            try:
                decoded = label[len(ACE_PREFIX) :].encode("ascii").decode("punycode")
            except UnicodeError:
                decoded = ""  # not valid punycode: kept as written
            if decoded and not decoded.isascii() and _printable(decoded):
                label = decoded
        labels.append(label)
    return unicodedata.normalize("NFC", ".".join(labels)).lower()
