"""Pure structural checks on the raw header block, and the one From address.

The header block is split by our own linear scanner (so that obsolete forms such as
``From : x`` or a stray line that other parsers silently drop are *seen*), and every
address is parsed with ``email.policy.default`` header objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.headerregistry import Address
from functools import lru_cache

from capture_server.email_policy import POLICY
from capture_server.mimetree import header_section_size

from .dnsclient import to_ascii_domain

__all__ = [
    "FromAddress",
    "StructuralProblem",
    "check_structure",
    "parse_from",
    "split_headers",
]

SINGLETON_HEADERS = ("from", "sender", "reply-to", "to", "cc", "subject", "date", "message-id")
_MAX_HEADER_BYTES = 1024 * 1024
_MAX_PROBLEMS = 50


@dataclass(frozen=True)
class StructuralProblem:
    code: str
    detail: str


@dataclass(frozen=True)
class FromAddress:
    address: str  # addr-spec with the domain lower-cased (A-label form)
    domain: str
    display_name: str


@dataclass(frozen=True)
class RawHeader:
    name: str  # as written, trailing white space removed
    value: str  # unfolded is NOT done: the raw value after the colon
    malformed_name: bool


def _header_block(raw: bytes) -> bytes:
    return raw[: min(header_section_size(raw), _MAX_HEADER_BYTES)]


def split_headers(raw: bytes) -> tuple[tuple[RawHeader, ...], tuple[StructuralProblem, ...]]:
    """Header fields in order, plus problems with lines that are not header fields."""
    return _split_block(_header_block(raw))


@lru_cache(maxsize=16)
def _split_block(block: bytes) -> tuple[tuple[RawHeader, ...], tuple[StructuralProblem, ...]]:
    # Cached: the From check, the structure check and the trusted-relay look-up of one
    # message each split the same block (immutable results).
    text = block.decode("utf-8", errors="replace")
    headers: list[RawHeader] = []
    problems: list[StructuralProblem] = []
    lines = text.replace("\r\n", "\n").split("\n")
    current: list[str] | None = None
    current_name = ""
    current_bad = False

    def flush() -> None:
        if current is not None:
            headers.append(RawHeader(current_name, "\n".join(current), current_bad))

    for lineno, line in enumerate(lines):
        if (
            lineno == 0
            and line.startswith("From ")
            and line.split(":", 1)[0].strip(" \t") != "From"
        ):
            # mbox "From " envelope line.
            continue
        if line[:1] in (" ", "\t"):
            if current is None:
                problems.append(StructuralProblem("malformed_header", "continuation line first"))
            else:
                current.append(line)
            continue
        colon = line.find(":")
        name = line[:colon] if colon > 0 else ""
        stripped = name.rstrip(" \t")
        if colon <= 0 or not stripped or any(not ("!" <= c <= "~") for c in stripped):
            if line.strip():
                problems.append(
                    StructuralProblem(
                        "malformed_header", f"line {lineno + 1} is not a header field"
                    )
                )
            continue
        flush()
        current = [line[colon + 1 :]]
        current_name = stripped
        current_bad = stripped != name
    flush()
    return tuple(headers), tuple(problems[:_MAX_PROBLEMS])


def _unfold(value: str) -> str:
    return " ".join(part.strip() for part in value.split("\n")).strip()


def _addresses(value: str) -> tuple[tuple[Address, ...], int, bool]:
    """(mailboxes, group count, had defects) of an address header, via policy.default."""
    header = POLICY.header_factory("From", _unfold(value))
    addresses = tuple(getattr(header, "addresses", ()))
    groups = tuple(getattr(header, "groups", ()))
    named_groups = sum(1 for g in groups if g.display_name is not None)
    defects = bool(getattr(header, "defects", ()))
    return addresses, named_groups, defects


def _from_address(addr: Address) -> FromAddress | None:
    username = addr.username
    domain = to_ascii_domain(addr.domain) if addr.domain else None
    if not username or domain is None:
        return None
    return FromAddress(f"{username}@{domain}", domain, addr.display_name)


def _single_from(
    headers: tuple[RawHeader, ...],
) -> tuple[FromAddress | None, list[StructuralProblem]]:
    froms = [h for h in headers if h.name.lower() == "from"]
    problems: list[StructuralProblem] = []
    if not froms:
        return None, [StructuralProblem("missing_from", "no From header")]
    if len(froms) > 1:
        return None, [StructuralProblem("multiple_from", f"{len(froms)} From headers")]
    try:
        addresses, groups, defects = _addresses(froms[0].value)
    except Exception:  # email's header parser on hostile input
        return None, [StructuralProblem("from_unparseable", "From header could not be parsed")]
    if len(addresses) != 1 or groups:
        problems.append(
            StructuralProblem(
                "from_not_single_mailbox",
                f"From holds {len(addresses)} mailboxes" + (" in a group" if groups else ""),
            )
        )
        return None, problems
    parsed = _from_address(addresses[0])
    if parsed is None:
        problems.append(StructuralProblem("from_no_domain", "From address has no valid domain"))
        return None, problems
    if defects:
        problems.append(StructuralProblem("from_defect", "From header has syntax defects"))
    return parsed, problems


def parse_from(raw: bytes) -> FromAddress | None:
    """The single From mailbox, or None when there is not exactly one valid one."""
    try:
        headers, _ = split_headers(raw)
        found, _problems = _single_from(headers)
    except Exception:
        return None
    return found


def check_structure(raw: bytes) -> tuple[StructuralProblem, ...]:
    """Problems that make the From header untrustworthy.  Pure; never raises."""
    try:
        return _check_structure(raw)
    except Exception as exc:  # defence in depth: garbage never raises
        return (
            StructuralProblem("unparseable", f"message could not be parsed: {type(exc).__name__}"),
        )


def _check_structure(raw: bytes) -> tuple[StructuralProblem, ...]:
    headers, problems = split_headers(raw)
    out = list(problems)
    counts: dict[str, int] = {}
    for h in headers:
        lname = h.name.lower()
        counts[lname] = counts.get(lname, 0) + 1
        if h.malformed_name and lname in SINGLETON_HEADERS:
            out.append(
                StructuralProblem("malformed_header", f"white space before the colon of {h.name}")
            )
    for name in SINGLETON_HEADERS:
        if name == "from":
            continue
        if counts.get(name, 0) > 1:
            out.append(StructuralProblem("duplicate_header", f"{counts[name]} {name} headers"))
    _found, from_problems = _single_from(headers)
    out.extend(from_problems)
    senders = [h for h in headers if h.name.lower() == "sender"]
    if len(senders) == 1:
        try:
            addresses, groups, _ = _addresses(senders[0].value)
        except Exception:
            addresses, groups = (), 0
        if len(addresses) != 1 or groups:
            out.append(StructuralProblem("sender_not_single_mailbox", "Sender must be one mailbox"))
    return tuple(out[:_MAX_PROBLEMS])
