"""Big base64 attachments parsed from the received bytes (pipeline/bodies.py, issue 10):
whatever the message, the result is the standard library's full parse, field for field and
byte for byte; the cut-out path is taken only where that is certain."""

from __future__ import annotations

import base64
import hashlib
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from capture_server.pipeline import bodies, parse
from capture_server.pipeline.bodies import EncodedBody, cut_runs
from capture_server.pipeline.message import Email, Kind, ParsedMessage
from capture_server.pipeline.parse import parse_bytes, parse_message, parsed_from
from tests.pipeline.helpers import run

DATA = Path(__file__).parents[1] / "data"
BIG = 400 * 1024  # decoded bytes: about 540 kB of base64 text, over bodies.CUT_MIN


def blob(size: int = BIG, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


def b64(data: bytes, line: int = 76) -> str:
    text = base64.b64encode(data).decode("ascii")
    return "\n".join(text[i : i + line] for i in range(0, len(text), line))


def crlf(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")


HEAD = """From: Rita Rep <rita@acme.test>
To: Carl Customer <carl@globex.test>
Subject: The offer
Date: Tue, 03 Nov 2026 09:15:00 +0000
Message-ID: <offer-1@mail.acme.test>
MIME-Version: 1.0
"""


def mixed(*parts: str, boundary: str = "mix") -> str:
    body = "".join(f"--{boundary}\n{part}\n" for part in parts)
    return f'Content-Type: multipart/mixed; boundary="{boundary}"\n\n{body}--{boundary}--\n'


TEXT = 'Content-Type: text/plain; charset="utf-8"\n\nHi Carl,\n\nthe offer is attached.\n\nRita'


def attached(
    data: bytes | str, name: str = "offer.pdf", kind: str = "application/pdf", cte: str = "base64"
) -> str:
    text = b64(data) if isinstance(data, bytes) else data
    return (
        f'Content-Type: {kind}; name="{name}"\n'
        f'Content-Disposition: attachment; filename="{name}"\n'
        f"Content-Transfer-Encoding: {cte}\n\n{text}"
    )


def full_parse(raw: bytes) -> ParsedMessage:
    return parsed_from(parse_bytes(raw))


def assert_same(raw: bytes, cut_minimum: int = bodies.CUT_MIN) -> ParsedMessage:
    """parse_message(raw) is the full parse: every field, every attachment's bytes."""
    fast = parse_message(raw, cut_minimum)
    full = full_parse(raw)
    assert fast == full  # Email, headers, content type, body size, forwarded parts, defects
    for mine, theirs in zip(fast.email.attachments, full.email.attachments, strict=True):
        assert (mine.filename, mine.content_type, mine.size, mine.sha256) == (
            theirs.filename,
            theirs.content_type,
            theirs.size,
            theirs.sha256,
        )
        assert mine.content == theirs.content
        assert b"".join(mine.chunks()) == theirs.content
        assert mine.sha256 == hashlib.sha256(theirs.content).hexdigest()
    return fast


def lean(email: Email) -> list[bool]:
    """Which attachments were left in the received bytes."""
    return [isinstance(a.body, EncodedBody) for a in email.attachments]


@pytest.mark.parametrize("path", sorted(DATA.glob("*.eml")), ids=lambda p: p.name)
@pytest.mark.parametrize("cut_minimum", [1, 64, bodies.CUT_MIN])
def test_every_fixture_parses_as_the_full_parse(path: Path, cut_minimum: int) -> None:
    # A tiny minimum cuts every line of letters and digits (text lines too): the placeholders
    # then land in text bodies and headers' neighbours, and the full parse must take over.
    assert_same(path.read_bytes(), cut_minimum)


def test_small_base64_attachments_are_cut_with_a_small_minimum() -> None:
    raw = (DATA / "bcc_html_attachment.eml").read_bytes()
    parsed = assert_same(raw, cut_minimum=1)
    assert parsed.email.attachments


Case = tuple[str, Callable[[], bytes], list[bool]]

CASES: list[Case] = [
    ("one pdf, crlf", lambda: crlf(HEAD + mixed(TEXT, attached(blob()))), [True]),
    ("one pdf, lf only", lambda: (HEAD + mixed(TEXT, attached(blob()))).encode(), [True]),
    (
        "two pdfs and a small one",
        lambda: crlf(
            HEAD
            + mixed(
                TEXT,
                attached(blob(seed=2), "a.pdf"),
                attached(blob(1000, seed=3), "small.png", "image/png"),
                attached(blob(seed=4), "b.zip", "application/zip"),
            )
        ),
        [True, False, True],
    ),
    (
        "nested multiparts",
        lambda: crlf(
            HEAD
            + mixed(
                mixed(
                    'Content-Type: multipart/alternative; boundary="alt"\n\n--alt\n'
                    + TEXT
                    + "\n--alt\nContent-Type: text/html\n\n<p>Hi Carl</p>\n--alt--",
                    attached(blob(seed=5), "inner.pdf"),
                    boundary="inner",
                ),
                attached(blob(seed=6), "outer.pdf"),
            )
        ),
        [True, True],  # document order; the inner multipart is no longer an (empty) file
    ),
    (
        "multipart/related image",
        lambda: crlf(
            HEAD
            + 'Content-Type: multipart/related; boundary="rel"\n\n--rel\n'
            + "Content-Type: text/html\n\n<img src=cid:x>\n--rel\n"
            + "Content-Type: image/png\nContent-ID: <x>\nContent-Transfer-Encoding: base64\n\n"
            + b64(blob(seed=7))
            + "\n--rel--\n"
        ),
        [True],
    ),
    (
        "upper-case encoding name, 64-character lines",
        lambda: crlf(HEAD + mixed(TEXT, attached(b64(blob(seed=8), 64), cte="BASE64"))),
        [True],
    ),
    (
        "no empty line after the part's headers",
        lambda: crlf(
            HEAD
            + mixed(
                TEXT,
                "Content-Type: application/pdf\nContent-Disposition: attachment\n"
                "Content-Transfer-Encoding: base64\n" + b64(blob(seed=9)),
            )
        ),
        [True],
    ),
    (
        "missing padding: decoded as the email package does (a defect), not cut",
        lambda: crlf(HEAD + mixed(TEXT, attached(b64(blob(BIG + 1, seed=10)).rstrip("=")))),
        [False],
    ),
    (
        "two encodings glued together: padding in the middle",
        lambda: crlf(
            HEAD + mixed(TEXT, attached(b64(blob(BIG + 1, seed=11)) + "\n" + b64(blob(seed=12))))
        ),
        [False],
    ),
    (
        "a line of other characters splits the run",
        lambda: crlf(
            HEAD
            + mixed(TEXT, attached(b64(blob(seed=13)) + "\n!!! not base64 !!!\n" + b64(blob())))
        ),
        [False],
    ),
    (
        "base64 text around the run (lines the parser splits at a bare CR)",
        lambda: crlf(
            HEAD
            + mixed(TEXT, attached("QUJD\rQUJD\n" + b64(blob(BIG - 1, seed=14)) + "\nQUJD\rQUJD"))
        ),
        [True],
    ),
    (
        "quoted-printable attachment of letters",
        lambda: crlf(HEAD + mixed(TEXT, attached(b64(blob(seed=15)), cte="quoted-printable"))),
        [True],  # text runs are cut too: decoded from the received bytes
    ),
    (
        "7bit attachment of base64-looking text",
        lambda: crlf(HEAD + mixed(TEXT, attached(b64(blob(seed=16)), "a.txt", cte="7bit"))),
        [True],  # text runs are cut too: decoded from the received bytes
    ),
    (
        "base64 text body",
        lambda: crlf(
            HEAD
            + mixed(
                "Content-Type: text/plain\nContent-Transfer-Encoding: base64\n\n"
                + b64(("Hello Carl. " * 50000).encode()),
                attached(blob(seed=17)),
            )
        ),
        [True],  # the text body is decoded from the received bytes too (test_bodies_nested)
    ),
    (
        "single-part base64 message",
        lambda: crlf(
            HEAD
            + "Content-Type: application/pdf\nContent-Transfer-Encoding: base64\n\n"
            + b64(blob(seed=18))
        ),
        [],
    ),
    (
        "attached message with a big attachment",
        lambda: crlf(
            HEAD
            + mixed(
                TEXT,
                "Content-Type: message/rfc822\n\n"
                + HEAD
                + mixed(TEXT, attached(blob(seed=19)), boundary="fwd"),
            )
        ),
        [False, True],  # the attached message, and its own attachment (nested walk)
    ),
    (
        "boundary never found",
        lambda: crlf(
            HEAD
            + 'Content-Type: multipart/mixed; boundary="nowhere"\n\n--elsewhere\n'
            + attached(blob(seed=20))
        ),
        [],
    ),
    (
        "no closing boundary",
        lambda: crlf(HEAD + mixed(TEXT, attached(blob(seed=21))).rsplit("--mix--", 1)[0]),
        [True],
    ),
    (
        "boundary without quotes, run in the preamble and epilogue",
        lambda: crlf(
            HEAD
            + "Content-Type: multipart/mixed; boundary=mix\n\n"
            + b64(blob(seed=22))
            + "\n"
            + mixed(TEXT, attached(blob(seed=23))).split("\n\n", 1)[1]
            + b64(blob(seed=24))
            + "\n"
        ),
        [False],
    ),
    (
        "headers only, a run where the body should be",
        lambda: crlf(HEAD + b64(blob(seed=25))),
        [],
    ),
]


@pytest.mark.parametrize(("make", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_generated_messages_parse_as_the_full_parse(
    make: Callable[[], bytes], expected: list[bool]
) -> None:
    parsed = assert_same(make())
    assert lean(parsed.email) == expected


def test_a_cut_out_attachment_is_decoded_in_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bodies, "CHUNK", 4099)  # chunks that split lines and base64 groups
    data = blob(seed=26)
    parsed = assert_same(crlf(HEAD + mixed(TEXT, attached(data))))
    [attachment] = parsed.email.attachments
    assert isinstance(attachment.body, EncodedBody)
    chunks = list(attachment.chunks())
    assert len(chunks) > 100 and max(map(len, chunks)) <= 4099
    assert b"".join(chunks) == data and attachment.size == len(data)


def test_the_placeholder_never_collides_with_the_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bodies.secrets, "token_hex", lambda _: "0" * 20)
    raw = crlf(HEAD + mixed(TEXT + "\nCaptureCut" + "0" * 20, attached(blob(seed=27))))
    assert cut_runs(raw) is None
    assert lean(assert_same(raw).email) == [False]


def test_the_pipeline_decides_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    # Dedupe key, content hash, attachments: the whole draft, fast parse or full parse.
    raw = crlf(HEAD + mixed(TEXT, attached(blob(seed=28)), attached(blob(900, seed=29), "s.png")))
    fast = run(raw, Kind.BCC).draft
    assert fast is not None and lean(fast.email) == [True, False]
    monkeypatch.setattr(parse, "cut_runs", lambda raw, minimum: None)
    full = run(raw, Kind.BCC).draft
    assert full is not None and lean(full.email) == [False, False]
    assert fast == full
    assert fast.as_dict() == full.as_dict()
    assert (fast.dedupe_key, fast.content_hash) == (full.dedupe_key, full.content_hash)
    assert [a.content for a in fast.email.attachments] == [
        a.content for a in full.email.attachments
    ]
