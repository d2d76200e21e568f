"""Address headers read fast when they are plainly written (issue 10: parse CPU).

policy.default parses an address list through a full RFC 5322 token tree: most of the parse
stage's time for a To or Cc of a few people. Almost all headers are as plain as
`Wes Quinn <wes@example.com>, "Patel, Hana" <hana@example.com>`; for those, and only those,
this module gives the very same (display name, addr-spec) pairs with one regular expression.
Anything else (comments, groups, encoded words, non-ASCII, escapes, empty list items,
obsolete syntax) returns None and goes through the standard parser, so no header is read
differently. tests/pipeline/test_addresses.py compares both on many generated values.
"""

from __future__ import annotations

import re

import re2

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_ADDR = rf"{_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"
# One mailbox: phrase <addr>, "quoted" <addr>, <addr> or a bare addr, with blanks around.
# re2: it sees header text (DESIGN: linear time).
_MAILBOX = re2.compile(
    r"[ \t]*(?:"
    rf"(?P<phrase>{_ATEXT}(?:[ \t]+{_ATEXT})*)[ \t]*<(?P<addr1>{_ADDR})>"
    rf'|"(?P<quoted>[^"\\]*)"[ \t]*<(?P<addr2>{_ADDR})>'
    rf"|<(?P<addr3>{_ADDR})>"
    rf"|(?P<addr4>{_ADDR})"
    r")[ \t]*(?:,|$)"
)
_LINE_BREAK = re.compile(r"\r|\n")  # what policy.default removes before parsing (unfolding)


def plain_mailboxes(value: str) -> list[tuple[str, str]] | None:
    """[(display name, addr-spec)] of a plainly written address list; None otherwise."""
    value = _LINE_BREAK.sub("", value)
    if not value.isascii() or "=?" in value or not value.strip():
        return None
    found: list[tuple[str, str]] = []
    position = 0
    end = len(value)
    while position < end:
        match = _MAILBOX.match(value, position)
        if match is None or match.end() == position:
            return None
        phrase, quoted = match.group("phrase"), match.group("quoted")
        if phrase is not None:
            found.append((" ".join(phrase.split()), match.group("addr1")))
        elif quoted is not None:
            found.append((quoted, match.group("addr2")))
        else:
            found.append(("", match.group("addr3") or match.group("addr4")))
        position = match.end()
    if value.rstrip(" \t").endswith(","):
        return None  # an empty last item: the standard parser's business
    return found
