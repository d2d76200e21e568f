"""Mailbox lists as forwarding clients print them (not RFC 5322: what people see).

Handles ``Name <a@b>``, ``"Name" <a@b>``, ``'Name' [a@b]``, ``Name [mailto:a@b]``,
``a@b<mailto:a@b>``, ``Name<mailto:a@b> <a@b<mailto:a@b>> on behalf of x@y``, bare
addresses, names holding unquoted commas (``Doe, John <a@b>``) and names without an
address.  A single left-to-right scan per value: linear time, no regular expressions.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_VALUE_CHARS = 16_384
MAX_MAILBOXES = 500

_OPEN = "<["
_CLOSE = ">]"
_QUOTES = {'"': '"', "«": "»", "„": "”", "“": "”"}
_NAME_TRIM = " \t\"'«»„”“*,;:"


@dataclass(frozen=True)
class Mailbox:
    """One printed mailbox.  ``address`` is ``""`` when the client printed a name only."""

    address: str
    name: str | None


def _split_top_level(value: str) -> list[str]:
    """Split on , and ; outside quotes and brackets."""
    parts: list[str] = []
    depth = 0
    quote: str | None = None
    start = 0
    for i, ch in enumerate(value):
        if quote is not None:
            if ch == quote:
                quote = None
            continue
        if ch in _QUOTES and depth == 0:
            quote = _QUOTES[ch]
        elif ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            if depth > 0:
                depth -= 1
        elif ch in ",;" and depth == 0:
            parts.append(value[start:i])
            start = i + 1
            if len(parts) >= MAX_MAILBOXES:
                return parts
    parts.append(value[start:])
    return parts


def _has_address(part: str) -> bool:
    return "@" in part


def _merge_name_fragments(parts: list[str]) -> list[str]:
    """Re-join ``Doe`` + `` John <j@x>`` that an unquoted comma in a name split apart."""
    merged: list[str] = []
    pending = ""
    for raw in parts:
        part = raw.strip()
        if not part:
            continue
        if pending:
            part = pending + ", " + part
            pending = ""
        if not _has_address(part) and "<" not in part and "[" not in part:
            pending = part
            continue
        merged.append(part)
    if pending:
        merged.append(pending)
    return merged


def _clean_address(raw: str) -> str:
    addr = raw.strip()
    if addr.lower().startswith("mailto:"):
        addr = addr[7:]
    # "a@b<mailto:a@b>" or "a@b[mailto:a@b]": keep what precedes the inner bracket.
    for sep in ("<", "["):
        cut = addr.find(sep)
        if cut > 0:
            addr = addr[:cut]
        elif cut == 0:
            addr = addr[1:]
    return addr.strip(" \t<>[]()'\"")


def _clean_name(raw: str) -> str | None:
    name = raw
    # "John Doe<mailto:john@x>" printed as a name: drop the link.
    cut = name.lower().find("<mailto:")
    if cut >= 0:
        name = name[:cut]
    name = name.strip()
    # Strip wrapping quotes, several layers ("'Name'").
    for _ in range(4):
        stripped = name.strip(_NAME_TRIM)
        if stripped == name:
            break
        name = stripped
    return name or None


def parse_mailbox(part: str) -> Mailbox | None:
    part = part.strip()
    if not part:
        return None
    # Find the first top-level bracket outside quotes.
    quote: str | None = None
    open_at = -1
    for i, ch in enumerate(part):
        if quote is not None:
            if ch == quote:
                quote = None
            continue
        if ch in _QUOTES:
            quote = _QUOTES[ch]
        elif ch in _OPEN:
            open_at = i
            break
    if open_at >= 0:
        # Content up to the matching bracket (brackets may nest: <a@b<mailto:a@b>>).
        depth = 0
        close_at = len(part)
        for j in range(open_at, len(part)):
            ch = part[j]
            if ch in _OPEN:
                depth += 1
            elif ch in _CLOSE:
                depth -= 1
                if depth == 0:
                    close_at = j
                    break
        inner = part[open_at + 1 : close_at]
        address = _clean_address(inner)
        name = _clean_name(part[:open_at])
        if "@" not in address:
            # "<mailto:...>"-less garbage in brackets: look for an address in the tail.
            tail = part[close_at + 1 :]
            if "@" in tail:
                more = parse_mailbox(tail)
                if more is not None:
                    address = more.address
        if not address:
            return Mailbox(address="", name=name) if name else None
        if name is not None and name.casefold() == address.casefold():
            name = None
        return Mailbox(address=address, name=name)
    # No brackets: a bare address, or a name alone.
    token = part.strip(_NAME_TRIM)
    if "@" in token and " " not in token:
        return Mailbox(address=_clean_address(token), name=None)
    if "@" in token:
        # "name a@b": take the last word holding '@' as the address.
        words = token.split()
        at_words = [w for w in words if "@" in w]
        address = _clean_address(at_words[-1])
        name = _clean_name(" ".join(w for w in words if "@" not in w))
        return Mailbox(address=address, name=name)
    name = _clean_name(token)
    return Mailbox(address="", name=name) if name else None


def parse_mailbox_list(value: str) -> tuple[Mailbox, ...]:
    """Every mailbox of a printed To/Cc/From value, in order."""
    value = value[:MAX_VALUE_CHARS].strip()
    if not value:
        return ()
    out: list[Mailbox] = []
    for part in _merge_name_fragments(_split_top_level(value)):
        box = parse_mailbox(part)
        if box is not None:
            out.append(box)
    return tuple(out)
