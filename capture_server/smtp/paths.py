"""The address of MAIL FROM and RCPT TO, read the quick way when it is plain.

aiosmtpd reads every path with the email package's header parser and defines a typing
Protocol class on each call: ~40 µs, twice a message, ~2.5 % of the daemon's CPU (issue 10).
Nearly every path is a plain `<local@domain>` of dot-atoms, which that parser reads as the
text between the brackets; anything else (`<>`, quoted local parts, source routes, no
brackets, non-ASCII) still goes to aiosmtpd's own reading. Property-tested against it.
"""

from __future__ import annotations

import re

from capture_server.pipeline.addresses import ATEXT

_DOT_ATOM = rf"{ATEXT}(?:\.{ATEXT})*"
# The email package's get_domain takes a dot-atom of atext too, not only hostname labels.
_PLAIN_PATH = re.compile(rf"<({_DOT_ATOM}@{_DOT_ATOM})>")


def plain_path(arg: str, local_part_limit: int) -> tuple[str, str] | None:
    """(address, the rest of the command) as aiosmtpd's _getaddr gives them, for a plain
    `<local@domain>`; None: not plain, or a local part over local_part_limit (0: none),
    which aiosmtpd then refuses itself."""
    match = _PLAIN_PATH.match(arg)
    if match is None:
        return None
    address = match.group(1)
    if local_part_limit and len(address.rpartition("@")[0]) > local_part_limit:
        return None
    rest = arg[match.end() :].lstrip(" \t")  # the parser takes the blanks after ">" along
    if rest.startswith("("):
        return None  # a comment, which it would take along too
    return address, rest
