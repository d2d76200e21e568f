"""The feed parser's tree for plain messages, built with str.find instead of line by line.

`email.feedparser` reads a message through a generator a line at a time, testing each line
against every enclosing boundary: ~540 µs for the benchmark's 10 kB multipart/alternative
message, about 7 % of the daemon's CPU, plus the header section parsed again for the thread
look-up. Nearly all mail has a plain shape: a header section, then one body or a multipart of
such parts. For exactly those shapes `build` returns the tree BytesFeedParser(policy) makes
(the same header tuples, payload strings, preambles, epilogues, no defects); for anything else
it returns None and the caller runs the feed parser: a defect of any kind, a message/* part,
multipart/digest, a lone CR (a line end to the feed parser), a unix "From " line, a boundary
line right after another, a big message (memory: the feed parser holds lines, not a copy).
tests/pipeline/test_mimetree.py compares the two trees on real and generated mail.
"""

from __future__ import annotations

import email.feedparser
import re
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import EmailPolicy
from itertools import pairwise
from typing import Any

from capture_server.email_boundary import BoundaryMatcher

# The feed parser's own test of a header line (name and colon, or a continuation).
_HEADER_LINE: re.Pattern[str] = email.feedparser.headerRE  # type: ignore[attr-defined]
_MULTIPART_ENCODINGS = ("7bit", "8bit", "binary")
# Above this the feed parser runs: it holds the lines once, this path would add the text.
MAX_BYTES = 1024 * 1024


class _Unusual(Exception):
    """A shape left to the feed parser."""


@dataclass(frozen=True, slots=True)
class _BoundaryLine:
    start: int
    stop: int  # after its line end
    closing: bool


def build(
    raw: bytes, policy: EmailPolicy[Any], *, headers_only: bool = False
) -> EmailMessage | None:
    """BytesFeedParser(policy=policy) fed raw (headersonly as BytesParser's), or None when
    raw is not of a shape built here."""
    if len(raw) > MAX_BYTES:
        return None
    text = raw.decode("ascii", "surrogateescape")  # as BytesFeedParser.feed decodes
    if "\r" in text and text.count("\r") != text.count("\r\n"):
        return None  # with no lone CR, every line ends at a "\n"
    try:
        return _entity(text, 0, len(text), policy, headers_only=headers_only)
    except _Unusual:
        return None


def _entity(
    text: str,
    start: int,
    end: int,
    policy: EmailPolicy[Any],
    *,
    headers_only: bool = False,
    in_multipart: bool = False,
) -> EmailMessage:
    """The message or part in text[start:end], which holds no boundary line of an enclosing
    multipart (the feed parser's end-of-file predicates). in_multipart: end is the start of
    a boundary line, and RFC 2046 gives the line end before it to the boundary."""
    message = policy.message_factory(policy=policy)  # type: ignore[misc]
    assert isinstance(message, EmailMessage)
    body = _headers(message, text, start, end, policy)
    if headers_only:
        message.set_payload(text[body:end])
        return message
    maintype = message.get_content_maintype()
    if maintype == "message":
        raise _Unusual  # parsed as a nested message (and delivery-status as blocks)
    if maintype == "multipart":
        _multipart(message, text, body, end, policy, in_multipart)
    else:
        payload = text[body:end]
        message.set_payload(_without_line_end(payload) if in_multipart else payload)
    return message


def _headers(
    message: EmailMessage, text: str, start: int, end: int, policy: EmailPolicy[Any]
) -> int:
    """Set the header section at start on message; the offset of the body after it."""
    lines: list[str] = []  # the header being read: its first line and continuations
    position = start
    while position < end:
        newline = text.find("\n", position, end)
        stop = end if newline < 0 else newline + 1
        line = text[position:stop]
        position = stop
        if line == "\r\n" or line == "\n":
            break  # the empty line between the header section and the body
        if not _HEADER_LINE.match(line):
            raise _Unusual  # MissingHeaderBodySeparatorDefect: the line starts the body
        if line[0] in " \t":
            if not lines:
                raise _Unusual  # FirstHeaderLineIsContinuationDefect
            lines.append(line)
            continue
        if line[0] == ":" or line.startswith("From "):
            raise _Unusual  # a defect, or a unix From line
        if lines:
            message.set_raw(*policy.header_source_parse(lines))
        lines = [line]
    if lines:
        message.set_raw(*policy.header_source_parse(lines))
    return position


def _multipart(
    message: EmailMessage,
    text: str,
    start: int,
    end: int,
    policy: EmailPolicy[Any],
    in_multipart: bool,
) -> None:
    boundary = message.get_boundary()
    if boundary is None or message.get_content_type() == "multipart/digest":
        raise _Unusual  # a defect; digest parts default to message/rfc822
    if str(message.get("content-transfer-encoding", "8bit")).lower() not in _MULTIPART_ENCODINGS:
        raise _Unusual  # InvalidMultipartContentTransferEncodingDefect
    lines = _boundary_lines(text, start, end, "--" + boundary)
    if not lines or not lines[-1].closing or lines[0].closing:
        raise _Unusual  # Start- or CloseBoundaryNotFoundDefect
    if lines[0].start > start:
        # RFC 2046: the line end before a boundary belongs to the boundary.
        message.preamble = _without_line_end(text[start : lines[0].start])
    for opening, following in pairwise(lines):
        if following.start == opening.stop:
            raise _Unusual  # the feed parser skips repeated boundary lines, even the closing one
        message.attach(_entity(text, opening.stop, following.start, policy, in_multipart=True))
    # Up to an enclosing boundary line or the end (the closing line has its line end, or
    # ends the text).
    epilogue = text[lines[-1].stop : end]
    if in_multipart:
        message.epilogue = _without_line_end(epilogue) if epilogue else None
    else:
        message.epilogue = epilogue


def _boundary_lines(text: str, start: int, end: int, separator: str) -> list[_BoundaryLine]:
    """The lines in text[start:end] the feed parser takes as this multipart's boundary lines,
    up to the closing one."""
    matcher = BoundaryMatcher(separator)
    found: list[_BoundaryLine] = []
    position = start
    while (at := text.find(separator, position, end)) >= 0:
        position = at + 1
        if at != start and text[at - 1] != "\n":
            continue  # not at the start of a line
        newline = text.find("\n", at, end)
        stop = end if newline < 0 else newline + 1
        match = matcher.match(text[at:stop])
        if match is None:
            continue
        closing = match.group("end") is not None
        found.append(_BoundaryLine(at, stop, closing))
        if closing:
            break  # the rest is the epilogue, boundary lines or not
        position = stop
    return found


def header_section_size(raw: bytes) -> int:
    """Bytes before the first empty line (the whole message when there is none)."""
    crlf = raw.find(b"\r\n\r\n")
    # An LF-only empty line can only come first if it lies before the CRLF one: look there
    # only (a big CRLF message has no "\n\n" at all: a scan of all of it for nothing).
    lf = raw.find(b"\n\n", 0, crlf if crlf >= 0 else len(raw))
    return lf if lf >= 0 else crlf if crlf >= 0 else len(raw)


def _without_line_end(value: str) -> str:
    if value.endswith("\r\n"):
        return value[:-2]
    if value.endswith(("\n", "\r")):
        return value[:-1]
    return value
