"""Duplicate contacts: the same mailbox under provider rules, or the same person at a company.

Pure: the store reads the contacts, this decides which pairs to suggest and why.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from capture_server.pipeline.canonical import canonical_address

# Google ignores dots in the local part; googlemail.com is gmail.com.
_GMAIL = frozenset({"gmail.com", "googlemail.com"})


@dataclass(frozen=True)
class ContactKey:
    id: int
    name: str | None
    company: str | None  # the company's domain, None for free mail
    addresses: tuple[str, ...]  # primary first


@dataclass(frozen=True)
class DuplicatePair:
    keep: ContactKey  # the older contact
    merge: ContactKey
    reason: str  # same_mailbox | same_name_and_company
    detail: str


def canonical_mailbox(address: str) -> str:
    """The mailbox an address delivers to: case, +tag, and Gmail's dots and domain folded."""
    local, _, domain = canonical_address(address).rpartition("@")
    local = local.partition("+")[0] or local
    if domain in _GMAIL:
        local, domain = local.replace(".", ""), "gmail.com"
    return f"{local}@{domain}"


def _name_key(name: str | None) -> str:
    text = unicodedata.normalize("NFKC", name or "").casefold()
    return " ".join(text.replace(",", " ").split())


def duplicate_pairs(contacts: Iterable[ContactKey]) -> list[DuplicatePair]:
    """Each later contact paired with the oldest it duplicates, mailbox reasons first."""
    ordered = sorted(contacts, key=lambda c: c.id)
    by_mailbox: dict[str, ContactKey] = {}
    by_person: dict[tuple[str, str], ContactKey] = {}
    pairs: list[DuplicatePair] = []
    paired: set[tuple[int, int]] = set()
    for contact in ordered:
        for address in contact.addresses:
            mailbox = canonical_mailbox(address)
            first = by_mailbox.setdefault(mailbox, contact)
            if first.id != contact.id and (first.id, contact.id) not in paired:
                paired.add((first.id, contact.id))
                pairs.append(
                    DuplicatePair(first, contact, "same_mailbox", f"{address} is {mailbox}")
                )
        name = _name_key(contact.name)
        if name and contact.company:
            first = by_person.setdefault((name, contact.company), contact)
            if first.id != contact.id and (first.id, contact.id) not in paired:
                paired.add((first.id, contact.id))
                detail = f"both {contact.name!s} at {contact.company}"
                pairs.append(DuplicatePair(first, contact, "same_name_and_company", detail))
    return pairs
