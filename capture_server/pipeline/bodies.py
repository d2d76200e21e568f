"""Big attachments and bodies parsed without their text in memory (issue 10: memory).

The email package holds a part's text as a list of line strings, then as one joined string,
then decodes it: about three times the attachment at once, on top of the received bytes. Here
every long run of lines is cut out of the received bytes before parsing, one placeholder line
in its place, and the part is decoded from the received bytes in chunks when its size and hash
(parse) and its data (the store) are wanted: base64, quoted-printable, or (7bit, 8bit and any
other transfer encoding the email package leaves as it is) the bytes themselves.

Why the cut cannot change how the message parses: the feed parser looks at one line at a time.
A run's first line is never a header line (no colon after its leading printable characters, no
leading blank, not "From "), never a boundary (no leading "-") and never the empty line that
ends a header section: it takes the path the placeholder line takes (body text, or the line that
ends a header section and then body text). After it the parser is reading body text, and only a
boundary (a line starting with "--") or an empty line (the end of a message/delivery-status
block) could change that: no later line of the run is either. So the parser takes the same path
for the run as for the placeholder. Every line is ASCII without a bare CR (the parser would
split the line there). Where each placeholder landed is checked after the parse (`placed`);
anywhere but inside a part the caller decodes from the pieces (an attachment, the text body)
or a part whose payload is never read, or only written back out with its attached message
(`restore_generated`), the caller parses the whole message instead.
"""

from __future__ import annotations

import binascii
import dataclasses
import hashlib
import io
import secrets
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from email.message import Message

import re2

# A run shorter than this stays in the message: cutting small ones saves nothing.
CUT_MIN = 256 * 1024
# Encoded text decoded per step: what a big attachment costs in memory while it is read.
CHUNK = 1024 * 1024
# Whole lines (see the module's docstring); linear time (RE2). _ANY: ASCII but CR and LF.
_ANY = rb"[\x00-\x09\x0b\x0c\x0e-\x7f]"
_NOT_DASH = rb"[\x00-\x09\x0b\x0c\x0e-\x2c\x2e-\x7f]"
# Not a header line: printable characters but ":" (not "-" or "F" first), then the end of the
# line or a character that is neither (no colon right after them); or a control character first.
_FIRST = (
    rb"(?:[\x21-\x2c\x2e-\x39\x3b-\x45\x47-\x7e][\x21-\x39\x3b-\x7e]*"
    rb"(?:[\x00-\x09\x0b\x0c\x0e-\x20\x7f]" + _ANY + rb"*)?"
    rb"|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]" + _ANY + rb"*)\r?\n"
)
# Not empty, not starting with "--".
_REST = rb"(?:" + _NOT_DASH + _ANY + rb"*|-(?:" + _NOT_DASH + _ANY + rb"*)?)\r?\n"
_RUNS = re2.compile(rb"(?m)^" + _FIRST + rb"(?:" + _REST + rb")*")
_LINE_ENDS = b"\r\n"
_TOKEN_DIGITS = 6
# Transfer encodings Message.get_payload(decode=True) decodes: base64 and quoted-printable
# (see EncodedBody), uuencode (never from the pieces); any other leaves the bytes as they are.
BASE64 = "base64"
QUOTED_PRINTABLE = "quoted-printable"
_UUENCODE = ("x-uuencode", "uuencode", "uue", "x-uue")

Span = tuple[int, int]  # [start, end) of a run of lines in the received bytes
# One part's payload as the whole parse holds it, as bytes: literal pieces (the parsed payload
# around the placeholders) and runs of the received bytes (lines with their ends, but the
# last line's end where the parser took it off before a boundary).
Pieces = tuple[bytes | Span, ...]


def decodes(encoding: str) -> bool:
    """Whether a part of this transfer encoding (lower case, as get_payload reads it) can be
    decoded from its pieces."""
    return encoding not in _UUENCODE


@dataclass(frozen=True)
class Cut:
    """The received bytes with their long runs of lines replaced by placeholder lines."""

    raw: bytes = field(repr=False)
    skeleton: bytes = field(repr=False)
    nonce: str  # every placeholder starts with it; it occurs nowhere in raw
    runs: Mapping[str, Span]  # placeholder → the run it stands for

    @property
    def token_length(self) -> int:
        return len(self.nonce) + _TOKEN_DIGITS


@dataclass(frozen=True)
class EncodedBody:
    """A cut-out attachment or text body: its payload, and the size and SHA-256 of its decoded
    content. The chunks are exactly what `Message.get_payload(decode=True)` returns for the
    same payload: base64 (strict, see `encoded_body`), quoted-printable or the bytes as they
    are (`text_body`); `encoding` is the transfer encoding as get_payload reads it."""

    raw: bytes = field(repr=False)
    pieces: Pieces
    size: int  # of the decoded content
    sha256: str
    encoding: str = BASE64

    def chunks(self) -> Iterator[bytes]:
        """The decoded content in pieces of about CHUNK bytes (3/4 CHUNK for base64)."""
        if self.encoding == BASE64:
            for text in _aligned(_text(self.raw, self.pieces)):
                yield binascii.a2b_base64(text, strict_mode=True)
        elif self.encoding == QUOTED_PRINTABLE:
            # quopri.decodestring is binascii.a2b_qp: see _whole_lines.
            for text in _whole_lines(_payload(self.raw, self.pieces)):
                yield binascii.a2b_qp(text)
        else:
            yield from _payload(self.raw, self.pieces)

    def decode(self) -> bytes:
        return b"".join(self.chunks())


def _payload(raw: bytes, pieces: Pieces) -> Iterator[bytes]:
    """The payload's bytes, at most a CHUNK of the received bytes at a time, cut after an LF
    where there is one (so that _whole_lines seldom copies)."""
    view = memoryview(raw)
    for piece in pieces:
        if isinstance(piece, bytes):
            yield piece
            continue
        start, end = piece
        while start < end:
            stop = min(start + CHUNK, end)
            if stop < end:
                stop = raw.rfind(b"\n", start, stop) + 1 or stop
            yield view[start:stop].tobytes()
            start = stop


def _text(raw: bytes, pieces: Pieces) -> Iterator[bytes]:
    """The base64 text without line ends, a CHUNK of the received bytes at a time
    (get_payload(decode=True) joins bytes.splitlines(): it splits at CR and LF only)."""
    for text in _payload(raw, pieces):
        yield text.translate(None, _LINE_ENDS)


def _whole_lines(texts: Iterable[bytes]) -> Iterator[bytes]:
    """The texts regrouped so that each piece but the last ends with LF.

    binascii.a2b_qp reads its input left to right, and no step of it reads past an LF it
    consumes: an LF is a character of its own or ends a soft line break ("=" LF, or "=" CR and
    everything up to the next LF); "=XX" takes hex digits only, "==" two "=", and a "=" before
    anything else is copied and the next character read on its own. Only a "=" at the very end
    of the input (dropped) or a "=" CR without an LF after it (everything to the end skipped)
    depend on where the input ends, and neither can end a piece that ends with LF. So a2b_qp of
    each piece, joined, is a2b_qp of the whole text."""
    carry: list[bytes] = []
    for text in texts:
        cut = text.rfind(b"\n") + 1
        if not cut:
            carry.append(text)  # a line longer than CHUNK: held until it ends
            continue
        yield b"".join([*carry, text[:cut]]) if carry else text[:cut]
        carry = [text[cut:]] if cut < len(text) else []
    if carry:
        yield b"".join(carry)


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
    """raw with each run of lines of at least `minimum` bytes replaced by one
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
    """The payload (`Pieces`) of every part (by id) whose payload holds placeholders.

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
        if not before.isascii():
            return None
        # The placeholder line kept the run's last line end (as `restore` reads it).
        pieces += [before.encode("ascii"), (span[0], span[1] - _last_line_end(cut.raw, span))]
        position = index + cut.token_length
    after = payload[position:]
    if not after.isascii():
        return None  # get_payload(decode=True) takes other paths for non-ASCII text
    pieces.append(after.encode("ascii"))
    return tuple(piece for piece in pieces if piece != b"")  # a run is never empty


def _last_line_end(raw: bytes, span: Span) -> int:
    return 2 if raw[span[1] - 2 : span[1]] == b"\r\n" else 1


def restore(payload: str, cut: Cut) -> str:
    """A parsed payload with its placeholders replaced by the text they stand for."""
    found: list[str] = []
    position = 0
    while (index := payload.find(cut.nonce, position)) >= 0:
        start, end = cut.runs[payload[index : index + cut.token_length]]
        # The placeholder line kept the run's last line end: put back the run without it.
        end -= _last_line_end(cut.raw, (start, end))
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
        end -= _last_line_end(cut.raw, (start, end))
        out.writelines(_crlf_lines(cut.raw, start, end))
        position = index + cut.token_length
    out.write(view[position:])
    return out.getvalue()


def _crlf_lines(raw: bytes, start: int, end: int) -> Iterator[bytes]:
    """raw[start:end] (the lines of a run, each line end LF or CRLF, the last without one)
    with every line end CRLF, in pieces cut after a line end."""
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


def text_body(raw: bytes, pieces: Pieces, encoding: str) -> EncodedBody:
    """A quoted-printable part, or one get_payload(decode=True) returns as it is (any other
    encoding that `decodes`), with the size and SHA-256 of its decoded content, read in chunks.
    Both decodings take any text: the chunks are what the email package returns."""
    body = EncodedBody(raw, pieces, 0, "", encoding)
    digest = hashlib.sha256()
    size = 0
    for chunk in body.chunks():
        digest.update(chunk)
        size += len(chunk)
    return dataclasses.replace(body, size=size, sha256=digest.hexdigest())


def restored_length(payload: str, cut: Cut) -> int:
    """len(restore(payload, cut)), without building it."""
    length = len(payload)
    position = 0
    while (index := payload.find(cut.nonce, position)) >= 0:
        start, end = cut.runs[payload[index : index + cut.token_length]]
        length += end - start - _last_line_end(cut.raw, (start, end)) - cut.token_length
        position = index + cut.token_length
    return length


def unix_line_ends(text: str) -> str:
    """text with CRLF and lone CR line ends as LF (no copy when there is no CR)."""
    if "\r" not in text:
        return text
    return text.replace("\r\n", "\n").replace("\r", "\n")


_SIGNATURE_SEPARATOR = "-- "


def unflowed(text: str, delsp: bool = False) -> str:
    """The text of a format=flowed text/plain body (RFC 3676, 4.1-4.5), with LF line ends.

    A line ending in a space is soft-broken: it joins the next line of the same quote depth
    (delsp: without that space); a change of depth ends the paragraph. The space stuffed after
    the quote marks or at the start of a line is removed, a quoted line is written back as
    ">" * depth, one space and its text. "-- " (the signature separator) never flows."""
    out: list[str] = []
    paragraph: list[str] = []
    depth = 0
    for line in text.split("\n"):
        quotes = len(line) - len(line.lstrip(">"))
        content = line[quotes:]
        if content.startswith(" "):
            content = content[1:]
        if paragraph and quotes != depth:
            out.append(_quoted(depth, "".join(paragraph)))
            paragraph = []
        depth = quotes
        flowed = content.endswith(" ") and content != _SIGNATURE_SEPARATOR
        if flowed and delsp:
            content = content[:-1]
        paragraph.append(content)
        if not flowed:
            out.append(_quoted(depth, "".join(paragraph)))
            paragraph = []
    if paragraph:
        out.append(_quoted(depth, "".join(paragraph)))
    return "\n".join(out)


def _quoted(depth: int, text: str) -> str:
    if not depth:
        return text
    return ">" * depth + (" " + text if text else "")
