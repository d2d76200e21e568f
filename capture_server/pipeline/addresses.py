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

ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"  # RFC 5322 atext, one or more
_ADDR = rf"{ATEXT}(?:\.{ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"
# One mailbox: phrase <addr>, "quoted" <addr>, <addr> or a bare addr, with blanks around.
# re2: it sees header text (DESIGN: linear time). Over bytes: re2 maps every str offset
# to and from UTF-8 in Python, on each match (the values it reads are ASCII).
_MAILBOX = re2.compile(
    (
        r"[ \t]*(?:"
        rf"(?P<phrase>{ATEXT}(?:[ \t]+{ATEXT})*)[ \t]*<(?P<addr1>{_ADDR})>"
        rf'|"(?P<quoted>[^"\\]*)"[ \t]*<(?P<addr2>{_ADDR})>'
        rf"|<(?P<addr3>{_ADDR})>"
        rf"|(?P<addr4>{_ADDR})"
        r")[ \t]*(?:,|$)"
    ).encode("ascii")
)
_LINE_BREAK = re.compile(r"\r|\n")  # what policy.default removes before parsing (unfolding)


def plain_mailboxes(value: str) -> list[tuple[str, str]] | None:
    """[(display name, addr-spec)] of a plainly written address list; None otherwise."""
    value = _LINE_BREAK.sub("", value)
    if not value.isascii() or "=?" in value or not value.strip():
        return None
    found: list[tuple[str, str]] = []
    data = value.encode("ascii")
    position = 0
    end = len(data)
    while position < end:
        match = _MAILBOX.match(data, position)
        if match is None or match.end() == position:
            return None
        # One groups() call, in the pattern's order: re2 finds a group by name in Python,
        # building a dict of all names each time.
        phrase, addr1, quoted, addr2, addr3, addr4 = match.groups()
        if phrase is not None:
            found.append((" ".join(phrase.decode("ascii").split()), addr1.decode("ascii")))
        elif quoted is not None:
            found.append((quoted.decode("ascii"), addr2.decode("ascii")))
        else:
            found.append(("", (addr3 or addr4).decode("ascii")))
        position = match.end()
    if value.rstrip(" \t").endswith(","):
        return None  # an empty last item: the standard parser's business
    return found
