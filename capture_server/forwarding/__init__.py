"""Forward mode: recover the original message from an inline forward.

``parse_forwarded`` finds the forwarded block of any common client and language in a
forwarding email's text; ``html_to_text`` prepares HTML-only mail for it; client and
language knowledge lives in :mod:`capture_server.forwarding.tables` as data.
"""

from capture_server.forwarding.dates import parse_printed_date
from capture_server.forwarding.html import html_to_text
from capture_server.forwarding.mailbox import Mailbox, parse_mailbox_list
from capture_server.forwarding.parser import (
    ForwardedBlock,
    parse_forwarded,
    strip_forward_prefixes,
)

__all__ = [
    "ForwardedBlock",
    "Mailbox",
    "html_to_text",
    "parse_forwarded",
    "parse_mailbox_list",
    "parse_printed_date",
    "strip_forward_prefixes",
]
