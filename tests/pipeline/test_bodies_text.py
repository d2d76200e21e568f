"""Big quoted-printable and 7bit/8bit parts cut out of the received bytes (pipeline/bodies.py,
issue 10): the chunks are exactly `Message.get_payload(decode=True)`, whatever the text (line
ends, soft breaks, escapes at chunk edges, trailing blanks, broken escapes), and a message
parses, logs and stores as the email package's full parse gives it."""

from __future__ import annotations

import binascii
import hashlib
import itertools
import quopri
import random
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from capture_server.pipeline import bodies, parse
from capture_server.pipeline.bodies import EncodedBody, Pieces, cut_runs, text_body
from capture_server.pipeline.message import Kind, ParsedMessage
from capture_server.pipeline.parse import parse_bytes, parsed_from
from tests.conftest import Cli, make_account, start_daemon
from tests.pipeline.helpers import run
from tests.pipeline.test_bodies import HEAD, TEXT, assert_same, attached, crlf, lean, mixed
from tests.pipeline.test_bodies_nested import INNER_HEAD, forward, prose, spy_text_content
from tests.smtp.test_big_attachments import _rows
from tests.smtp.test_daemon import send

PROPERTY = settings(
    max_examples=300,
    deadline=timedelta(seconds=5),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@contextmanager
def chunk_size(size: int) -> Iterator[None]:
    """bodies.CHUNK for one example (hypothesis runs many in one test function)."""
    saved = bodies.CHUNK
    bodies.CHUNK = size
    try:
        yield
    finally:
        bodies.CHUNK = saved


def decoded_by_the_email_package(payload: bytes, encoding: str) -> bytes:
    part = EmailMessage(policy=policy.default)
    part["Content-Transfer-Encoding"] = encoding
    part.set_payload(payload.decode("ascii"))
    content = part.get_payload(decode=True)
    assert isinstance(content, bytes)
    return content


# Pieces of quoted-printable text, broken and not: every rule of a2b_qp near a line end.
QP_TOKENS = [
    "abc",
    "x",
    " ",
    "\t",
    "  \t ",
    "=",
    "==",
    "===",
    "=3D",
    "=3d",
    "=C3=A9",
    "=4",
    "=G1",
    "=4G",
    "=\r",  # a bare CR after "=": a2b_qp skips to the next LF
    "\r",
    "=\x0b",
    ":",
    "-",
    "_",
    "\x00",
    "\x7f",
]
LINE_ENDS = ["\n", "\r\n", "=\n", "=\r\n", "= \n", "=\t\r\n", " \r\n", "\t\n", "\r\r\n"]


@st.composite
def qp_texts(draw: st.DrawFn) -> str:
    lines = draw(
        st.lists(
            st.tuples(
                st.lists(st.sampled_from(QP_TOKENS), max_size=8).map("".join),
                st.sampled_from(LINE_ENDS),
            ),
            max_size=30,
        )
    )
    text = "".join(line + end for line, end in lines)
    tail = draw(st.sampled_from(["", "=", "==", "=4", "abc", "=\r", "abc=", " \t", "=\r\n"]))
    return text + tail


@st.composite
def laid_out(draw: st.DrawFn, payload: bytes) -> tuple[bytes, Pieces]:
    """payload as pieces: literal bytes and spans of a buffer around it, cut anywhere."""
    cuts = sorted(draw(st.sets(st.integers(0, len(payload)), max_size=6)) | {0, len(payload)})
    before = draw(st.sampled_from([b"", b"junk\r\n", b"=\n"]))
    raw = before + payload + b"=\r\njunk"
    pieces: list[bytes | tuple[int, int]] = []
    for start, end in itertools.pairwise(cuts):
        if start == end:
            continue
        if draw(st.booleans()):
            pieces.append(payload[start:end])
        else:
            pieces.append((len(before) + start, len(before) + end))
    return raw, tuple(pieces)


@PROPERTY
@given(data=st.data(), text=qp_texts(), chunk=st.integers(1, 64))
def test_quoted_printable_chunks_are_get_payload(
    data: st.DataObject, text: str, chunk: int
) -> None:
    payload = text.encode("ascii")
    raw, pieces = data.draw(laid_out(payload))
    expected = decoded_by_the_email_package(payload, "quoted-printable")
    assert expected == quopri.decodestring(payload)
    with chunk_size(chunk):
        body = text_body(raw, pieces, "quoted-printable")
        chunks = list(body.chunks())
        assert b"".join(chunks) == expected
        texts = list(bodies._whole_lines(bodies._payload(raw, pieces)))
    assert b"".join(texts) == payload
    assert all(piece.endswith(b"\n") for piece in texts[:-1])  # where a2b_qp may be cut
    assert (body.size, body.sha256) == (len(expected), hashlib.sha256(expected).hexdigest())
    assert body.decode() == expected


@PROPERTY
@given(
    data=st.data(),
    text=st.text(st.characters(max_codepoint=127), max_size=300),
    encoding=st.sampled_from(["7bit", "8bit", "binary", "", "x-unknown", "quoted-printable "]),
    chunk=st.integers(1, 64),
)
def test_unencoded_chunks_are_get_payload(
    data: st.DataObject, text: str, encoding: str, chunk: int
) -> None:
    payload = text.encode("ascii")
    raw, pieces = data.draw(laid_out(payload))
    expected = decoded_by_the_email_package(payload, encoding)
    assert expected == payload  # "quoted-printable " (a blank after it) is not decoded either
    with chunk_size(chunk):
        body = text_body(raw, pieces, encoding.lower())
        assert b"".join(body.chunks()) == expected
    assert (body.size, body.sha256) == (len(expected), hashlib.sha256(expected).hexdigest())


def test_a_line_longer_than_a_chunk_is_held_until_it_ends() -> None:
    texts = [b"ab", b"c=", b"\r", b"\nd", b"e", b"f\n", b"g"]
    assert list(bodies._whole_lines(texts)) == [b"abc=\r\n", b"def\n", b"g"]
    assert list(bodies._whole_lines([b"a\n", b"b\n"])) == [b"a\n", b"b\n"]
    assert list(bodies._whole_lines([])) == []


# -- whole messages ---------------------------------------------------------------------------

# Lines a run may or may not take: headers, boundaries, "From ", blanks, bare CRs, non-ASCII.
MESSAGE_LINES = [
    "plain words here",
    "a=3Db=C3=A9 =",
    "x=",
    "Subject: looks like a header",
    "From here on",
    "From: rita@acme.test",
    "  leading blanks",
    "\tleading tab",
    "-- signature",
    "--mix",
    "--mix--",
    "- item",
    "-",
    "",
    "trailing  ",
    "bare\rCR",
    "Grüße",
    "=",
    "a,b,10:00",
    "no:colon-space",
    "\x0bvertical tab",
]


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    lines = draw(st.lists(st.sampled_from(MESSAGE_LINES), min_size=1, max_size=25))
    text = "\n".join(lines)
    encoding = draw(
        st.sampled_from(["quoted-printable", "7bit", "8bit", "base64", "QUOTED-PRINTABLE"])
    )
    where = draw(st.sampled_from(["attachment", "body", "single", "forward", "two"]))
    if where == "attachment":
        message = HEAD + mixed(TEXT, attached(text, "a.csv", "text/csv", encoding))
    elif where == "body":
        body = f"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: {encoding}"
        message = HEAD + mixed(body + "\n\n" + text, attached(text, "b.txt", "text/plain", "7bit"))
    elif where == "single":
        message = HEAD + f"Content-Transfer-Encoding: {encoding}\n\n" + text
    elif where == "forward":
        inner = INNER_HEAD + mixed(
            TEXT, attached(text, "c.csv", "text/csv", encoding), boundary="f"
        )
        message = HEAD + mixed(TEXT, forward(inner))
    else:
        message = HEAD + mixed(
            attached(text, "d.csv", "text/csv", encoding), attached(text + "\n", "e.txt")
        )
    line_end = draw(st.sampled_from(["\n", "\r\n", "mixed"]))
    if line_end == "mixed":
        ends = draw(st.lists(st.sampled_from(["\n", "\r\n"]), min_size=message.count("\n") + 1))
        return "".join(
            line + end for line, end in zip(message.split("\n"), ends, strict=False)
        ).encode()
    return message.replace("\n", line_end).encode()


@PROPERTY
@given(raw=messages(), minimum=st.sampled_from([1, 16, 200]), chunk=st.integers(1, 40))
def test_messages_parse_as_the_full_parse(raw: bytes, minimum: int, chunk: int) -> None:
    with chunk_size(chunk):
        assert_same(raw, minimum)


# -- big parts --------------------------------------------------------------------------------


def csv(size: int, seed: int = 1) -> bytes:
    """About `size` bytes of CSV-like UTF-8 text with CRLF line ends."""
    return prose(size, seed).replace(" ", ",").replace("\n", "\r\n").encode()


def qp(data: bytes) -> str:
    return quopri.encodestring(data).decode("ascii")


def binary_qp(data: bytes) -> str:
    """Quoted-printable with CR and LF escaped too."""
    return binascii.b2a_qp(data, istext=False).decode("ascii")


def took_cut(raw: bytes) -> bool:
    cut = cut_runs(raw)
    return cut is not None and parse._parsed_cut(cut) is not None


def big_qp_message(seed: int = 1) -> bytes:
    return crlf(
        HEAD
        + mixed(TEXT, attached(qp(csv(600_000, seed)), "a.csv", "text/csv", "quoted-printable"))
    )


def big_7bit_message(seed: int = 2) -> bytes:
    text = csv(600_000, seed).decode().encode("ascii", "replace").decode()
    return crlf(HEAD + mixed(TEXT, attached(text, "a.csv", "text/csv", "7bit")))


@pytest.mark.parametrize("make", [big_qp_message, big_7bit_message], ids=["qp", "7bit"])
def test_a_big_text_attachment_is_decoded_in_chunks(
    make: Callable[[], bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = make()
    assert took_cut(raw)
    monkeypatch.setattr(bodies, "CHUNK", 4099)  # chunks that end mid-line and mid-escape
    parsed = assert_same(raw)
    [attachment] = parsed.email.attachments
    assert isinstance(attachment.body, EncodedBody)
    assert attachment.body.encoding in ("quoted-printable", "7bit")
    chunks = list(attachment.chunks())
    assert len(chunks) > 100 and max(map(len, chunks)) <= 4099 + 200  # + at most a line


@pytest.mark.parametrize(
    ("name", "make", "expected"),
    [
        (
            "upper-case encoding name",
            lambda: crlf(HEAD + mixed(TEXT, attached(qp(csv(600_000)), cte="Quoted-Printable"))),
            [True],
        ),
        (
            "8bit with non-ASCII text: left to the full parse",
            lambda: crlf(HEAD + mixed(TEXT, attached(csv(600_000).decode(), cte="8bit"))),
            [False],
        ),
        (
            "no transfer encoding at all",
            lambda: crlf(
                HEAD
                + mixed(
                    TEXT,
                    'Content-Type: text/csv\nContent-Disposition: attachment; filename="a.csv"\n\n'
                    + csv(600_000).decode().encode("ascii", "replace").decode(),
                )
            ),
            [True],
        ),
        (
            "uuencode: left to the full parse",
            lambda: crlf(HEAD + mixed(TEXT, attached(qp(csv(600_000)), cte="x-uuencode"))),
            [False],
        ),
        (
            "a run that ends the part's headers (no empty line)",
            lambda: crlf(
                HEAD
                + mixed(
                    TEXT,
                    "Content-Type: text/csv\nContent-Transfer-Encoding: quoted-printable\n"
                    + qp(csv(600_000)),
                )
            ),
            [True],
        ),
        (
            "header-like lines and signatures inside the text",
            lambda: crlf(
                HEAD
                + mixed(
                    TEXT,
                    attached(
                        qp(csv(300_000, 3))
                        + "\nSubject: not a header\nFrom here\n- dash\n  indented\n"
                        + qp(csv(300_000, 4)),
                        cte="quoted-printable",
                    ),
                )
            ),
            [True],
        ),
        (
            "a boundary-like line splits the run",
            lambda: crlf(
                HEAD
                + mixed(
                    TEXT,
                    attached(
                        qp(csv(300_000, 5)) + "\n--mix-not\n" + qp(csv(300_000, 6)), cte="7bit"
                    ),
                )
            ),
            [True],
        ),
        (
            "big quoted-printable text body",
            lambda: crlf(
                HEAD
                + mixed(
                    "Content-Type: text/plain; charset=utf-8\n"
                    "Content-Transfer-Encoding: quoted-printable\n\n" + qp(csv(600_000)),
                    attached(qp(csv(600_000, 7)), cte="quoted-printable"),
                )
            ),
            [True],
        ),
        (
            "inside an attached message",
            lambda: crlf(
                HEAD
                + mixed(
                    TEXT,
                    forward(
                        INNER_HEAD
                        + mixed(
                            TEXT, attached(qp(csv(600_000)), cte="quoted-printable"), boundary="f"
                        )
                    ),
                )
            ),
            [False, True],
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_big_text_parts_parse_as_the_full_parse(
    name: str, make: Callable[[], bytes], expected: list[bool]
) -> None:
    parsed = assert_same(make())
    assert lean(parsed.email) == expected


def test_a_big_quoted_printable_body_is_decoded_from_the_pieces(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    body = (
        "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n"
    )
    raw = crlf(HEAD + mixed(body + qp(csv(600_000) + b" \r\n\t\r\n")))
    calls = spy_text_content(monkeypatch)
    assert took_cut(raw)
    parsed = assert_same(raw)
    assert calls and parsed.email.body_text


def test_the_parse_holds_no_copy_of_a_big_attachment() -> None:
    raw = crlf(
        HEAD + mixed(TEXT, attached(qp(csv(8_000_000)), "a.csv", "text/csv", "quoted-printable"))
    )
    tracemalloc.start()
    try:
        parsed = parse.parse_message(raw)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert lean(parsed.email) == [True]
    # A few chunks at a time (the full parse peaks near three times the message).
    assert len(raw) > 10 * bodies.CHUNK and peak < 4 * bodies.CHUNK


def test_the_pipeline_decides_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = big_qp_message(8)
    fast = run(raw, Kind.BCC).draft
    assert fast is not None and lean(fast.email) == [True]
    monkeypatch.setattr(parse, "cut_runs", lambda raw, minimum: None)
    full = run(raw, Kind.BCC).draft
    assert full is not None and lean(full.email) == [False]
    assert fast == full
    assert fast.as_dict() == full.as_dict()
    assert (fast.dedupe_key, fast.content_hash) == (full.dedupe_key, full.content_hash)
    assert [a.content for a in fast.email.attachments] == [
        a.content for a in full.email.attachments
    ]


# -- stored over SMTP -------------------------------------------------------------------------


def full_parse(raw: bytes) -> ParsedMessage:
    return parsed_from(parse_bytes(raw))


def test_big_text_attachments_are_stored_byte_for_byte(
    database_url: str, cli: Cli, tmp_path: Path
) -> None:
    rnd = random.Random(20)
    messages = [
        big_qp_message(21).replace(b"offer-1@", b"text-1@"),
        big_7bit_message(22).replace(b"offer-1@", b"text-2@"),
        crlf(  # the first one's content once more, base64 this time: one blob for both
            HEAD.replace("offer-1@", "text-3@")
            + mixed(TEXT, attached(csv(600_000, 21), "b.csv", "text/csv", "base64"))
        ),
        crlf(
            HEAD.replace("offer-1@", "text-4@")
            + mixed(TEXT, attached(binary_qp(rnd.randbytes(400_000)), cte="quoted-printable"))
        ),
    ]
    expected = [full_parse(raw).email.attachments for raw in messages]
    assert all(took_cut(raw) for raw in messages)
    daemon = start_daemon(database_url, tmp_path)
    try:
        account = make_account(cli)
        answers = [send(daemon, raw, [account.bcc], "rita@acme.test") for raw in messages]
    finally:
        daemon.stop()
    assert [code for code, _ in answers] == [250] * len(messages), answers
    blobs, attachments = _rows(database_url)
    contents = {a.sha256: a.content for found in expected for a in found}
    assert blobs == {sha: (len(data), data) for sha, data in contents.items()}
    ids = [reply.decode().rsplit(" ", 1)[1] for _, reply in answers]
    rows = [
        (engagement_id, position, a.filename, a.content_type, a.size, a.sha256)
        for engagement_id, found in zip(ids, expected, strict=True)
        for position, a in enumerate(found)
    ]
    assert sorted(attachments) == sorted(rows)
