"""The inline-forward parser: recover the original message from a forwarding email's text.

How it works (one pass over the lines, every match on a single bounded line, RE2 only):

1. Normalise line ends, drop byte-order marks, turn no-break spaces into spaces; for every
   line compute its quote depth (leading ``>``) and its de-quoted content.
2. Walk the lines and stop at the first line that opens a forwarded block that *validates*:

   ============== ============================================================ ==========
   family         opening line                                                 needs
   ============== ============================================================ ==========
   apple_mail     "Begin forwarded message:" (phrase + colon, any language)   -
   gmail          "---------- Forwarded message ---------" (dashed phrase)      -
   yahoo          dashed phrase with the header block glued on the same line  -
   outlook        "-----Original Message-----" or a line of underscores       a From
   outlook_header a bare "From:" header block (new Outlook, Outlook 2013)      see below
   reply_line     "On <date>, <name> <address> wrote:" (Outlook 2019)        Fwd subject
   ============== ============================================================ ==========

   A header block is the run of "Label: value" lines after the opening line (labels from
   :mod:`tables`, any language, ``*bold*`` labels included).  Phrase-less openings (a line
   of underscores, "Original Message", a bare header block) are only accepted when the
   header block is there, so a signature's separator line above the real block is skipped.
   When the forwarding subject is a reply ("Re:", "AW:" ...), only openings that say
   "forwarded" count: a reply's quoted history is not a forward.
3. The text above the opening line is the forwarder's note; the rest after the header block
   is the original body, de-quoted by the block's own quote depth.
4. ``innermost=True`` descends into a forward nested at the very start of the body (a
   forward of a forward, possibly under a one-line "FYI"), down to the original.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import re2

from capture_server.forwarding import tables
from capture_server.forwarding.mailbox import Mailbox, parse_mailbox, parse_mailbox_list

MAX_TEXT_CHARS = 4_000_000  # beyond this the tail is ignored (bodies > 2 MB are not logged)
MAX_MATCH_CHARS = 4_096  # chars of a line that the line matchers look at
MAX_GLUED_CHARS = 20_000  # a Yahoo glued header line
MAX_HEADER_LINES = 40
MAX_BLANKS_AFTER_SEPARATOR = 4
MAX_DEPTH = 64
MAX_PHRASE_CHARS = 80  # a "Begin forwarded message:" line is short
MAX_LABEL_CHARS = 40  # a header label is found within the first chars of its line
MAX_SUBJECT_CHARS = 10_000
MAX_PREFIXES = 64  # subject prefixes stripped at most
NESTED_NOTE_MAX_CHARS = 120  # an "FYI" above a nested forward still lets us descend
NESTED_NOTE_MAX_LINES = 2


# --------------------------------------------------------------------------- tables → RE2


def _alternation(words: set[str]) -> str:
    return "|".join(re2.escape(w) for w in sorted(words, key=lambda w: (-len(w), w)))


def _collect() -> tuple[dict[str, str], set[str], set[str], set[str], set[str], list[str]]:
    labels: dict[str, str] = {}
    forward_phrases: set[str] = set()
    original_phrases: set[str] = set()
    fwd_prefixes: set[str] = set()
    reply_prefixes: set[str] = set()
    reply_lines: list[str] = []
    for lang in tables.LANGUAGES:
        groups = (
            ("from", lang.from_labels),
            ("to", lang.to_labels),
            ("cc", lang.cc_labels),
            ("bcc", lang.bcc_labels),
            ("subject", lang.subject_labels),
            ("date", lang.date_labels),
            ("other", lang.other_labels),
        )
        for field_name, words in groups:
            for word in words:
                labels.setdefault(word.casefold(), field_name)
        forward_phrases.update(lang.forward_separators)
        original_phrases.update(lang.original_separators)
        fwd_prefixes.update(lang.forward_prefixes)
        reply_prefixes.update(lang.reply_prefixes)
        reply_lines.extend(lang.reply_lines)
    return labels, forward_phrases, original_phrases, fwd_prefixes, reply_prefixes, reply_lines


(
    _LABELS,
    _FORWARD_PHRASES,
    _ORIGINAL_PHRASES,
    _FWD_PREFIXES,
    _REPLY_PREFIXES,
    _REPLY_LINE_SOURCES,
) = _collect()
_FWD_PREFIX_KEYS = {p.casefold() for p in _FWD_PREFIXES}
_REPLY_PREFIX_KEYS = {p.casefold() for p in _REPLY_PREFIXES} - _FWD_PREFIX_KEYS
_FORWARD_PHRASE_KEYS = {p.casefold() for p in _FORWARD_PHRASES}

_ALL_PHRASES = _alternation(_FORWARD_PHRASES | _ORIGINAL_PHRASES)
_LABEL_ALT = _alternation({w for w in _LABELS})

_DASHED_SEP = re2.compile(
    r"^[-=_*~—]{2,}\s*(?i:(?P<phrase>" + _ALL_PHRASES + r"))\s*:?\s*[-=_*~—]{2,}\s*(?P<rest>.*)$"
)
_COLON_SEP = re2.compile(r"^(?i:(?P<phrase>" + _ALL_PHRASES + r"))\s*[:：]\s*$")
_GLUED_LABEL = re2.compile(
    r"(?i:(?P<label>"
    + _LABEL_ALT
    + r"))[ \t]?[:：]|(?P<bare>"
    + _alternation(set(tables.GLUED_COLONLESS_LABELS))
    + r") "
)
_PREFIX = re2.compile(
    r"^(?i:(?P<prefix>" + _alternation(_FWD_PREFIXES | _REPLY_PREFIXES) + r"))"
    r"\s*(?:\[\d{1,4}\]|\(\d{1,4}\)|\^\d{1,4})?\s*[:：]"
)

_NAME = r"(?P<name>\"[^\"]*\"|«[^»]*»|„[^”“]*[”“]|'[^']*'|[^,<>\[\]()\"«»„”]*?)"
_ADDR = r"[<\[(]+(?:mailto:)?(?P<address>[^<>\[\]()\s@]+@[^<>\[\]()\s]+)[>\])]+"
_REPLY_LINES = [
    re2.compile(r"^\s*" + src.replace("NAME", _NAME).replace("ADDR", _ADDR) + r"\s*$")
    for src in _REPLY_LINE_SOURCES
]
_TIME_SPLIT = re2.compile(
    r"^(?P<time>.*\d{1,2}[:.]\d{2}(?:[:.]\d{2})?(?:\s*[AaPp]\.?[Mm]\.?)?)\s+(?P<rest>.+)$"
)


# --------------------------------------------------------------------------- public types


@dataclass(frozen=True)
class ForwardedBlock:
    subject: str | None
    date: str | None
    sender: Mailbox | None
    to: tuple[Mailbox, ...]
    cc: tuple[Mailbox, ...]
    body: str
    note: str | None
    client: str
    confidence: float
    depth: int


# --------------------------------------------------------------------------- subjects


def _skip_tags(s: str, i: int) -> int:
    """Skip "[EXTERNAL] " style tags that are not a "[Fwd: ...]" wrapper."""
    n = len(s)
    while i < n and s[i] == "[":
        close = s.find("]", i, i + 64)
        if close < 0:
            return i
        inner = s[i + 1 : close]
        if _PREFIX.match(inner[:64]) is not None:
            return i
        i = close + 1
        while i < n and s[i] in " \t":
            i += 1
    return i


def _prefix_at(s: str, i: int) -> tuple[str, int] | None:
    m: Any = _PREFIX.match(s[i : i + 64])
    if m is None:
        return None
    return m.group("prefix").casefold(), i + m.end()


def strip_forward_prefixes(subject: str, *, replies: bool = True) -> str:
    """Remove leading forward prefixes, in many languages, repeated and nested.

    "Fwd: TR: WG: RV: VS: Doorst: Fw: x" → "x"; "[Fwd: x]" → "x"; "x (fwd)" → "x".
    With ``replies`` (the default) reply prefixes ("Re:", "AW:", "SV:", "Odp:" ...) mixed
    in are removed too; with ``replies=False`` stripping stops at the first reply prefix.
    """
    s = " ".join(subject[:MAX_SUBJECT_CHARS].split())
    i = 0
    end = len(s)
    for _ in range(MAX_PREFIXES):
        while i < end and s[i] in " \t":
            i += 1
        if i < end and s[i] == "[" and s[end - 1] == "]":
            inner = _prefix_at(s, i + 1)
            if inner is not None and (replies or inner[0] in _FWD_PREFIX_KEYS):
                i, end = inner[1], end - 1
                continue
        found = _prefix_at(s, i)
        if found is None:
            break
        key, nxt = found
        if key not in _FWD_PREFIX_KEYS and not replies:
            break
        i = nxt
    out = s[i:end].strip()
    if out.casefold().endswith("(fwd)"):
        out = out[:-5].rstrip()
    return out


def _subject_kind(subject: str | None) -> str | None:
    """ "forward", "reply", "other" or None (no subject given)."""
    if subject is None:
        return None
    s = subject.strip()
    if not s:
        return None
    i = _skip_tags(s, 0)
    if i < len(s) and s[i] == "[":
        i += 1
    found = _prefix_at(s, i)
    if found is None:
        return "forward" if s.casefold().endswith("(fwd)") else "other"
    return "forward" if found[0] in _FWD_PREFIX_KEYS else "reply"


# --------------------------------------------------------------------------- lines


def _quote_split(line: str) -> tuple[int, str]:
    """Quote depth of a line (leading ``>`` markers) and its stripped content."""
    content = line.lstrip("> \t")
    prefix_len = len(line) - len(content)
    if prefix_len == 0:
        return 0, line
    return line.count(">", 0, prefix_len), content


def _strip_levels(line: str, levels: int) -> str:
    """Remove up to ``levels`` quote markers, each with one following space."""
    if levels <= 0 or not line:
        return line
    rest = line.lstrip("> \t")
    prefix_len = len(line) - len(rest)
    if prefix_len == 0:
        return line
    prefix = line[:prefix_len]
    markers = prefix.count(">")
    if markers == 0:
        return line
    if markers <= levels:
        cut = prefix.rfind(">") + 1
    else:
        cut = -1
        for _ in range(levels):
            cut = prefix.find(">", cut + 1)
        cut += 1
    if cut < len(line) and line[cut] == " ":
        cut += 1
    return line[cut:]


class _Text:
    """The lines of the text with their quote depth and de-quoted content."""

    def __init__(self, text: str) -> None:
        self.raw = text.split("\n")
        self.depth: list[int] = []
        self.content: list[str] = []
        for line in self.raw:
            d, c = _quote_split(line)
            self.depth.append(d)
            self.content.append(c.strip())
        self._labels: dict[int, tuple[str, str] | None] = {}

    def label(self, i: int) -> tuple[str, str] | None:
        """The (field, value) of a "Label: value" line, memoised per line."""
        if i in self._labels:
            return self._labels[i]
        found = _label_field(self.content[i])
        self._labels[i] = found
        return found

    def __len__(self) -> int:
        return len(self.raw)

    def blank(self, i: int) -> bool:
        return not self.content[i]


# --------------------------------------------------------------------------- header blocks


@dataclass
class _Headers:
    values: dict[str, str]
    depth: int

    def has(self, name: str) -> bool:
        return bool(self.values.get(name))


@dataclass
class _Block:
    start: int  # first line of the block (the opening line)
    body_start: int  # first line after the header block
    client: str
    headers: _Headers
    sender: Mailbox | None
    confidence: float


def _label_field(content: str) -> tuple[str, str] | None:
    """Split "Label: value" (also "*Label:*", "Label :", "Label："); the label must be known.

    Plain string operations on the first few dozen characters: no regular expression.
    """
    head = content[:MAX_LABEL_CHARS]
    colon = head.find(":")
    wide = head.find("：")
    if colon < 0 or (0 <= wide < colon):
        colon = wide
    if colon <= 0:
        return None
    label = head[:colon].strip().strip("*").strip()
    field_name = _LABELS.get(label.casefold())
    if field_name is None:
        return None
    value = content[colon + 1 : colon + 1 + MAX_GLUED_CHARS]
    return field_name, value.strip().strip("*").strip()


def _needs_continuation(field_name: str, value: str) -> bool:
    if field_name not in ("to", "cc", "bcc", "from"):
        return False
    v = value.rstrip()
    return v.endswith((",", ";")) or v.count("<") > v.count(">")


def _parse_headers(t: _Text, first: int) -> tuple[_Headers, int]:
    """Parse "Label: value" lines from ``first``; return headers and the next line."""
    values: dict[str, str] = {}
    depth = t.depth[first] if first < len(t) else 0
    i = first
    last_field: str | None = None
    end = min(len(t), first + MAX_HEADER_LINES)
    while i < end:
        content = t.content[i]
        if not content:
            break
        found = t.label(i)
        if found is None:
            if last_field is not None and _needs_continuation(last_field, values[last_field]):
                values[last_field] = values[last_field] + " " + content[:MAX_GLUED_CHARS]
                i += 1
                continue
            break
        field_name, value = found
        if field_name in values and field_name != "other":
            break
        values[field_name] = value
        last_field = field_name
        i += 1
    return _Headers(values=values, depth=depth), i


def _parse_glued(rest: str) -> dict[str, str]:
    """Yahoo prints the header block on the separator line, labels glued to values."""
    rest = rest[:MAX_GLUED_CHARS]
    marks: list[tuple[int, int, str]] = []
    for m in _GLUED_LABEL.finditer(rest):
        label = m.group("label") or m.group("bare")
        field_name = _LABELS.get(label.casefold())
        if field_name is not None:
            marks.append((m.start(), m.end(), field_name))
    values: dict[str, str] = {}
    for k, (_, end, field_name) in enumerate(marks):
        stop = marks[k + 1][0] if k + 1 < len(marks) else len(rest)
        if field_name not in values:
            values[field_name] = rest[end:stop].strip()
    return values


def _sender_of(headers: _Headers) -> Mailbox | None:
    value = headers.values.get("from")
    if not value:
        return None
    boxes = parse_mailbox_list(value)
    if not boxes:
        return None
    return boxes[0]


def _valid_header_block(h: _Headers, *, strict: bool) -> bool:
    if not h.has("from"):
        return False
    others = sum(1 for f in ("to", "cc", "subject", "date") if h.has(f))
    if strict:
        return h.has("date") and h.has("subject") and others >= 2
    return others >= 1


# --------------------------------------------------------------------------- openings


def _skip_blank(t: _Text, i: int, limit: int) -> int:
    stop = min(len(t), i + limit)
    while i < stop and t.blank(i):
        i += 1
    return i


def _try_separator(t: _Text, i: int, kind: str | None) -> _Block | None:
    content = t.content[i]
    if len(content) < 3:
        return None
    head = content[:MAX_MATCH_CHARS]
    first = head[0]
    phrase: str | None = None
    rest = ""
    client = ""
    if first in "-=_*~—":
        m: Any = _DASHED_SEP.match(head)
        if m is not None:
            phrase = m.group("phrase")
            rest = m.group("rest")
            if len(content) > MAX_MATCH_CHARS:
                rest += content[MAX_MATCH_CHARS:MAX_GLUED_CHARS]
            client = "zoho" if first == "=" else "gmail"
        elif len(head) >= tables.UNDERSCORE_SEPARATOR_MIN and not head.strip("_ \t"):
            client = "outlook"
    if not client and len(head) <= MAX_PHRASE_CHARS and head.endswith((":", "：")):
        m = _COLON_SEP.match(head)
        if m is not None:
            phrase = m.group("phrase")
            client = "apple_mail"
    if not client:
        return None
    explicit = phrase is not None and phrase.casefold() in _FORWARD_PHRASE_KEYS
    if not explicit and kind == "reply":
        return None
    if phrase is not None and not explicit:
        client = "outlook"
    if rest.strip():
        values = _parse_glued(rest)
        headers = _Headers(values=values, depth=t.depth[i])
        if not headers.has("from") and not explicit:
            return None
        sender = _sender_of(headers)
        return _Block(i, i + 1, "yahoo", headers, sender, _confidence(0.9, sender))
    first_header = _skip_blank(t, i + 1, MAX_BLANKS_AFTER_SEPARATOR)
    if first_header >= len(t):
        if not explicit:
            return None
        return _Block(i, len(t), client, _Headers({}, t.depth[i]), None, 0.4)
    headers, body_start = _parse_headers(t, first_header)
    if body_start < len(t) and t.content[body_start] == content:
        # Zoho closes the header block with the same separator line.
        body_start += 1
    if not _valid_header_block(headers, strict=False):
        if not explicit:
            return None
        # A forward we cannot read the header block of: still a forward.
        return _Block(i, first_header, client, _Headers({}, t.depth[i]), None, 0.4)
    sender = _sender_of(headers)
    base = 0.95 if explicit else 0.9
    return _Block(i, body_start, client, headers, sender, _confidence(base, sender))


def _try_bare_headers(t: _Text, i: int, kind: str | None, nested: bool) -> _Block | None:
    if kind == "reply":
        return None
    found = t.label(i)
    if found is None or found[0] != "from":
        return None
    headers, body_start = _parse_headers(t, i)
    strict = kind != "forward" and not nested
    if not _valid_header_block(headers, strict=strict):
        return None
    sender = _sender_of(headers)
    if (sender is None or not sender.address) and strict:
        return None
    base = 0.85 if not strict else 0.6
    return _Block(i, body_start, "outlook_header", headers, sender, _confidence(base, sender))


def _match_reply_line(line: str) -> Any:
    if not line.endswith((":", "：")) or "@" not in line:
        return None
    for pattern in _REPLY_LINES:
        m = pattern.match(line)
        if m is not None:
            return m
    return None


def _try_reply_line(t: _Text, i: int, kind: str | None) -> _Block | None:
    if kind != "forward":
        return None
    content = t.content[i][:MAX_MATCH_CHARS]
    if "@" not in content:
        return None
    m = _match_reply_line(content)
    used = 1
    if m is None and i + 1 < len(t) and 0 < len(t.content[i + 1]) <= 40:
        m = _match_reply_line(content + " " + t.content[i + 1])
        used = 2
    if m is None:
        return None
    date = m.group("date").strip()
    name = m.group("name").strip().strip("\"'«»„”“ ")
    split: Any = _TIME_SPLIT.match(name) if name else None
    if split is not None:
        date = date + " " + split.group("time")
        name = split.group("rest").strip()
    address = m.group("address").strip()
    sender = Mailbox(address=address, name=name if name and name != address else None)
    headers = _Headers(values={"date": date}, depth=t.depth[i])
    return _Block(i, i + used, "reply_line", headers, sender, _confidence(0.75, sender))


def _confidence(base: float, sender: Mailbox | None) -> float:
    if sender is None:
        return round(max(0.0, base - 0.45), 2)
    if not sender.address:
        return round(max(0.0, base - 0.3), 2)
    return base


def _opening_at(t: _Text, i: int, kind: str | None, nested: bool) -> _Block | None:
    content = t.content[i]
    if not content:
        return None
    block = _try_separator(t, i, kind)
    if block is None:
        block = _try_bare_headers(t, i, kind, nested)
    if block is None:
        block = _try_reply_line(t, i, kind)
    return block


def _find_outer(t: _Text, kind: str | None) -> _Block | None:
    for i in range(len(t)):
        block = _opening_at(t, i, kind, nested=False)
        if block is not None:
            return block
    return None


def _find_nested(t: _Text, start: int, kind: str | None) -> _Block | None:
    """A forward opening at the start of a body, under at most a one-line note."""
    note_lines = 0
    note_chars = 0
    i = start
    n = len(t)
    while i < n:
        if t.blank(i):
            i += 1
            continue
        block = _opening_at(t, i, kind, nested=True)
        if block is not None:
            return block
        note_lines += 1
        note_chars += len(t.content[i])
        if note_lines > NESTED_NOTE_MAX_LINES or note_chars > NESTED_NOTE_MAX_CHARS:
            return None
        i += 1
    return None


# --------------------------------------------------------------------------- body and note


def _body(t: _Text, block: _Block) -> str:
    start = block.body_start
    lines = t.raw[start:]
    depths = t.depth[start:]
    contents = t.content[start:]
    body_depth = min((d for d, c in zip(depths, contents, strict=True) if c), default=0)
    levels = max(block.headers.depth, body_depth)
    # Whitespace-only lines (IONOS prints "> \u00a0") become empty lines.
    out = [line if line.strip() else "" for line in (_strip_levels(x, levels) for x in lines)]
    non_blank = [line for line in out if line.strip()]
    if non_blank and all(line.startswith("    ") for line in non_blank):
        out = [line[4:] for line in out]
    return "\n".join(out).strip()


def _note(t: _Text, block: _Block) -> str | None:
    note = "\n".join(t.raw[: block.start]).strip()
    return note or None


# --------------------------------------------------------------------------- entry point


def _normalise(text: str) -> str:
    text = text[:MAX_TEXT_CHARS]
    return (
        text.replace("\r\n", "\n").replace("\r", "\n").replace("\ufeff", "").replace("\u00a0", " ")
    )


def parse_forwarded(
    text: str, subject: str | None = None, *, innermost: bool = True
) -> ForwardedBlock | None:
    """Find the forwarded message in a forwarding email's plain-text body.

    ``subject`` is the forwarding email's Subject header, when known: a forward prefix
    ("Fwd:", "TR:", "WG:" ...) confirms a forward and unlocks the weaker openings (a bare
    header block, an "On ... wrote:" line); a reply prefix ("Re:") restricts the search to
    openings that say "forwarded".  Returns ``None`` when the text holds no forwarded
    message.  ``innermost`` unwraps forwards of forwards down to the original; ``False``
    returns the outermost block, whose body then holds the nested forwards.
    """
    if not text:
        return None
    t = _Text(_normalise(text))
    kind = _subject_kind(subject)
    outer = _find_outer(t, kind)
    if outer is None:
        return None
    block = outer
    depth = 1
    if innermost:
        while depth < MAX_DEPTH:
            inner = _find_nested(t, block.body_start, kind)
            if inner is None or inner.body_start <= block.body_start:
                break
            block = inner
            depth += 1
    h = block.headers.values
    subject_value = h.get("subject")
    if subject_value:
        original_subject: str | None = strip_forward_prefixes(subject_value, replies=False)
    elif subject:
        original_subject = strip_forward_prefixes(subject, replies=False) or None
    else:
        original_subject = None
    to_value = h.get("to", "")
    cc_value = h.get("cc", "")
    return ForwardedBlock(
        subject=original_subject,
        date=h.get("date") or None,
        sender=block.sender,
        to=parse_mailbox_list(to_value) if to_value else (),
        cc=parse_mailbox_list(cc_value) if cc_value else (),
        body=_body(t, block),
        note=_note(t, outer),
        client=block.client,
        confidence=block.confidence,
        depth=depth,
    )


__all__ = [
    "ForwardedBlock",
    "Mailbox",
    "parse_forwarded",
    "parse_mailbox",
    "strip_forward_prefixes",
]
