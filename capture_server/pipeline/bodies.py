"""Big base64 attachments parsed without their text in memory (issue 10: memory).

The email package holds a part's base64 text as a list of line strings, then as one joined
string, then decodes it: about three times the attachment at once, on top of the received
bytes. Here every long run of base64 lines is cut out of the received bytes before parsing,
one placeholder line in its place, and the attachment is decoded from the received bytes in
chunks when its size and hash (parse) and its data (the store) are wanted.

Why the cut cannot change how the message parses: the feed parser looks at one line at a time,
and a non-empty line of base64 characters alone is never a header line (no colon, no leading
blank), never a boundary (no "-") and never the empty line that ends a header section, so it
takes the same path for one such line as for many. Where each placeholder landed is checked
after the parse (`placed`); anywhere but inside a base64 part the caller decodes from the pieces
(an attachment, the text body) or a part whose payload is never read, or only written back out
with its attached message (`restore_generated`), the caller parses the whole message instead.
"""

from __future__ import annotations

import binascii
import hashlib
import io
import secrets
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from email.message import Message

import re2

# A run shorter than this stays in the message: cutting small ones saves nothing.
CUT_MIN = 256 * 1024
# Base64 text decoded per step: what a big attachment costs in memory while it is read.
CHUNK = 1024 * 1024
# Whole lines of base64 characters; linear time (RE2).
_RUNS = re2.compile(rb"(?m)^(?:[A-Za-z0-9+/=]+\r?\n)+")
_LINE_ENDS = b"\r\n"
_TOKEN_DIGITS = 6

Span = tuple[int, int]  # [start, end) of a run of base64 lines in the received bytes
# One attachment's base64 text: literal pieces (the parsed payload around the placeholders,
# line ends removed) and runs of the received bytes (lines with their ends).
Pieces = tuple[bytes | Span, ...]


@dataclass(frozen=True)
class Cut:
    """The received bytes with their long base64 runs replaced by placeholder lines."""

    raw: bytes = field(repr=False)
    skeleton: bytes = field(repr=False)
    nonce: str  # every placeholder starts with it; it occurs nowhere in raw
    runs: Mapping[str, Span]  # placeholder → the run it stands for

    @property
    def token_length(self) -> int:
        return len(self.nonce) + _TOKEN_DIGITS


@dataclass(frozen=True)
class EncodedBody:
    """A cut-out attachment: its base64 text, strict (see `encoded_body`), so the chunks are
    exactly what `Message.get_payload(decode=True)` returns for the same text."""

    raw: bytes = field(repr=False)
    pieces: Pieces
    size: int  # of the decoded content
    sha256: str

    def chunks(self) -> Iterator[bytes]:
        """The decoded content in pieces of about 3/4 CHUNK bytes."""
        for text in _aligned(_text(self.raw, self.pieces)):
            yield binascii.a2b_base64(text, strict_mode=True)

    def decode(self) -> bytes:
        return b"".join(self.chunks())


def _text(raw: bytes, pieces: Pieces) -> Iterator[bytes]:
    """The base64 text without line ends, a CHUNK of the received bytes at a time."""
    view = memoryview(raw)
    for piece in pieces:
        if isinstance(piece, bytes):
            yield piece
            continue
        for start in range(piece[0], piece[1], CHUNK):
            yield view[start : min(start + CHUNK, piece[1])].tobytes().translate(None, _LINE_ENDS)


def _aligned(texts: Iterable[bytes]) -> Iterator[bytes]:
    """Base64 text regrouped in multiples of four characters (the last group as it is)."""
    carry = b""
    for text in texts:
        text = carry + text if carry else text
        cut = len(text) - len(text) % 4
        carry = text[cut:]
        if cut:
            yield text[:cut]
    if carry:
        yield carry


def cut_runs(raw: bytes, minimum: int = CUT_MIN) -> Cut | None:
    """raw with each run of base64 lines of at least `minimum` bytes replaced by one
    placeholder line; None when there is none (or, never in practice, the nonce is in raw)."""
    if len(raw) < minimum:
        return None
    spans = [m.span() for m in _RUNS.finditer(raw) if m.end() - m.start() >= minimum]
    if not spans:
        return None
    nonce = "CaptureCut" + secrets.token_hex(10)
    if raw.find(nonce.encode("ascii")) >= 0:
        return None
    view = memoryview(raw)
    pieces: list[bytes | memoryview] = []
    runs: dict[str, Span] = {}
    position = 0
    for index, (start, end) in enumerate(spans):
        token = f"{nonce}{index:0{_TOKEN_DIGITS}d}"
        runs[token] = (start, end)
        line_end = b"\r\n" if raw[end - 2 : end] == b"\r\n" else b"\n"
        pieces += [view[position:start], token.encode("ascii") + line_end]
        position = end
    pieces.append(view[position:])
    return Cut(raw, b"".join(pieces), nonce, runs)


def placed(
    message: Message, cut: Cut, allowed: Iterable[Message], *, used: Iterable[Message]
) -> dict[int, Pieces] | None:
    """The base64 text of every part (by id) whose payload holds placeholders.

    Placeholders may be in the payload of a part in `allowed` (the caller decodes it from the
    pieces, or restores it), or of a part not in `used` (every part whose payload the caller
    reads): such a payload is never read, or only written back out as part of an attached
    message's bytes, where `restore_generated` puts the runs back. Inside an attached message,
    the part must not be a multipart or message part: the generator writes only other parts'
    payloads line by line (its _handle_text), which is what `restore_generated` relies on.

    None, so that the caller parses the whole message, when a placeholder is anywhere else
    (a header, a preamble or epilogue, another part), is missing or repeated, or the text
    around it is not plain ASCII.
    """
    allowed_ids = {id(part) for part in allowed}
    used_ids = {id(part) for part in used}
    found: dict[int, Pieces] = {}
    seen: set[str] = set()
    for part, inside_message in _nodes(message):
        texts = [part.preamble, part.epilogue, *(str(v) for _, v in part.raw_items())]
        if any(text is not None and cut.nonce in text for text in texts):
            return None
        payload = getattr(part, "_payload", None)
        if not isinstance(payload, str) or cut.nonce not in payload:
            continue
        if inside_message and part.get_content_maintype() in ("multipart", "message"):
            return None
        if id(part) in used_ids and id(part) not in allowed_ids:
            return None
        pieces = _pieces(payload, cut, seen)
        if pieces is None:
            return None
        found[id(part)] = pieces
    return found if seen == set(cut.runs) else None


def _nodes(message: Message) -> Iterator[tuple[Message, bool]]:
    """Every part with whether it lies inside an attached message (iterative: no recursion)."""
    stack: list[tuple[Message, bool]] = [(message, False)]
    while stack:
        part, inside = stack.pop()
        yield part, inside
        payload = getattr(part, "_payload", None)
        if isinstance(payload, list):
            nested = inside or part.get_content_maintype() == "message"
            stack.extend((child, nested) for child in reversed(payload))


def _pieces(payload: str, cut: Cut, seen: set[str]) -> Pieces | None:
    pieces: list[bytes | Span] = []
    position = 0
    while (index := payload.find(cut.nonce, position)) >= 0:
        token = payload[index : index + cut.token_length]
        before = payload[position:index]
        span = cut.runs.get(token)
        # A placeholder is a whole line: the text before it ends one (or is nothing).
        if span is None or token in seen or (before and not before.endswith(("\n", "\r"))):
            return None
        seen.add(token)
        literal = _literal(before)
        if literal is None:
            return None
        pieces += [literal, span]
        position = index + cut.token_length
    literal = _literal(payload[position:])
    if literal is None:
        return None
    pieces.append(literal)
    return tuple(piece for piece in pieces if piece != b"")


def _literal(text: str) -> bytes | None:
    # get_payload(decode=True) joins bytes.splitlines(); non-ASCII takes other paths there.
    return b"".join(text.encode("ascii").splitlines()) if text.isascii() else None


def restore(payload: str, cut: Cut) -> str:
    """A parsed payload with its placeholders replaced by the text they stand for."""
    found: list[str] = []
    position = 0
    while (index := payload.find(cut.nonce, position)) >= 0:
        start, end = cut.runs[payload[index : index + cut.token_length]]
        # The placeholder line kept the run's last line end: put back the run without it.
        end -= 2 if cut.raw[end - 2 : end] == b"\r\n" else 1
        found += [payload[position:index], cut.raw[start:end].decode("ascii")]
        position = index + cut.token_length
    found.append(payload[position:])
    return "".join(found)


def restore_generated(content: bytes, cut: Cut) -> bytes:
    """An attached message's bytes as the generator wrote them from the cut parse
    (`Message.as_bytes(policy=policy.SMTP)`), with the runs put back: the bytes it writes
    from the whole parse.

    The generator writes a text payload line by line, each line ended with CRLF but the last
    (_write_lines); `placed` checked that each placeholder is a whole line of such a payload.
    So where the whole parse has the run's lines, the cut parse has the placeholder alone:
    it stands for the run's lines joined with CRLF, without the run's last line end. The
    result is written a CHUNK at a time (io.BytesIO hands over its buffer without a copy).
    """
    token = cut.nonce.encode("ascii")
    if content.find(token) < 0:
        return content
    out = io.BytesIO()
    view = memoryview(content)
    position = 0
    while (index := content.find(token, position)) >= 0:
        out.write(view[position:index])
        start, end = cut.runs[content[index : index + cut.token_length].decode("ascii")]
        end -= 2 if cut.raw[end - 2 : end] == b"\r\n" else 1
        out.writelines(_crlf_lines(cut.raw, start, end))
        position = index + cut.token_length
    out.write(view[position:])
    return out.getvalue()


def _crlf_lines(raw: bytes, start: int, end: int) -> Iterator[bytes]:
    """raw[start:end] (lines of base64 characters, each line end LF or CRLF, the last without
    one) with every line end CRLF, in pieces cut after a line end."""
    view = memoryview(raw)
    while start < end:
        stop = min(start + CHUNK, end)
        if stop < end:
            last = raw.rfind(b"\n", start, stop)
            stop = last + 1 if last >= 0 else raw.find(b"\n", stop, end) + 1 or end
        piece = view[start:stop].tobytes()
        yield piece.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        start = stop


def encoded_body(raw: bytes, pieces: Pieces) -> EncodedBody | None:
    """The body with the size and SHA-256 of its decoded content, read in chunks; None when the
    text is not strict base64 (length, characters or padding): the caller then decodes it as
    the email package does, defects and all."""
    digest = hashlib.sha256()
    size = 0
    padded = False
    try:
        for text in _aligned(_text(raw, pieces)):
            if padded or len(text) % 4:
                return None  # "=" before the last group, or decode_b would add padding
            padded = b"=" in text
            decoded = binascii.a2b_base64(text, strict_mode=True)
            digest.update(decoded)
            size += len(decoded)
    except binascii.Error:
        return None
    return EncodedBody(raw, pieces, size, digest.hexdigest())
