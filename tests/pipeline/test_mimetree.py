"""mimetree.build makes the feed parser's tree, or declines (None) and the feed parser runs.

Every comparison is of the whole tree: each message object's attributes (header tuples,
preamble, epilogue, default type, charset, unix from, defects) and payloads, recursively.
Inputs: the test messages of this repository, the forwarded-mail corpus wrapped in messages,
and generated MIME trees with and without the defects the fast path must leave alone.
"""

from __future__ import annotations

import random
from email.feedparser import BytesFeedParser
from email.message import Message
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest

from capture_server import mimetree
from capture_server.email_policy import POLICY, parsed_header_section
from capture_server.pipeline.parse import leading_header_section, parse_bytes

TESTS = Path(__file__).resolve().parents[1]
CORPUS = TESTS.parent.parent / "shared" / "corpora" / "forwarded" / "fixtures"
EML = sorted(TESTS.rglob("*.eml"))


def tree(message: Message) -> dict[str, Any]:
    fields = dict(vars(message))
    payload = fields.pop("_payload")
    fields["defects"] = [(type(d).__name__, str(d)) for d in fields["defects"]]
    fields["class"] = type(message).__name__
    fields["payload"] = [tree(p) for p in payload] if isinstance(payload, list) else payload
    return fields


def feed_parser(raw: bytes) -> Message:
    feed = BytesFeedParser(policy=POLICY)
    feed.feed(raw)
    return feed.close()


def check(raw: bytes) -> bool:
    """Whether the fast path built raw; when it did, its tree is the feed parser's."""
    built = mimetree.build(raw, POLICY)
    if built is not None:
        assert tree(built) == tree(feed_parser(raw))
    headers = mimetree.build(raw, POLICY, headers_only=True)
    if headers is not None:
        expected = BytesParser(policy=POLICY).parsebytes(raw, headersonly=True)
        assert tree(headers) == tree(expected)
    return built is not None


def test_repository_messages() -> None:
    assert len(EML) > 40
    built = [path.name for path in EML if check(path.read_bytes())]
    # Most test mail is plain; the rest (message/rfc822, delivery reports) is declined.
    assert len(built) > len(EML) * 0.7, built


@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"corpus not found at {CORPUS}")
def test_corpus_bodies_in_messages() -> None:
    fixtures = sorted(CORPUS.glob("*.txt"))
    assert len(fixtures) > 200
    for path in fixtures:
        text = path.read_bytes()
        plain = HEAD + b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + text
        assert check(plain), path.name
        html = b"<html><body><pre>" + text + b"</pre></body></html>\r\n"
        alternative = (
            HEAD + b'Content-Type: multipart/alternative; boundary="b1"\r\n\r\n'
            b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            + text
            + b"\r\n--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
            + html
            + b"\r\n--b1--\r\n"
        )
        assert check(alternative), path.name
        assert check(alternative.replace(b"\r\n", b"\n")), path.name


HEAD = (
    b"From: Rita Rep <rita@example.com>\r\nTo: ann@client.test\r\n"
    b"Subject: Re: offer\r\nMessage-ID: <m1@example.com>\r\nMIME-Version: 1.0\r\n"
)


@pytest.mark.parametrize(
    "raw",
    [
        # Boundary lines with trailing blanks, a closing line without a line end.
        HEAD + b'Content-Type: multipart/mixed; boundary="x"\r\n\r\n--x \t\r\n\r\nbody\r\n--x--',
        # Preamble and epilogue, LF only.
        b"Subject: a\nContent-Type: multipart/mixed; boundary=zz\n\npre\namble\n\n--zz\n"
        b"Content-Type: text/plain\n\none\n--zz--\nepi\nlogue\n",
        # The boundary text inside lines and after a prefix: not boundary lines.
        HEAD + b'Content-Type: multipart/alternative; boundary="b"\r\n\r\n--b\r\n\r\n'
        b"a --b in the middle\r\n--bb is another\r\n--b-- x is not closing\r\nends --b\r\n"
        b"--b--\r\n--b\r\nafter the closing line: epilogue\r\n",
        # Nested, the inner boundary starting with the outer one.
        HEAD + b'Content-Type: multipart/mixed; boundary="o"\r\n\r\n--o\r\n'
        b'Content-Type: multipart/alternative; boundary="o-1"\r\n\r\n--o-1\r\n\r\nplain\r\n'
        b"--o-1\r\nContent-Type: text/html\r\n\r\n<p>x</p>\r\n--o-1--\r\n\r\n--o\r\n"
        b"Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"JVBERi0=\r\n--o--\r\n",
        # An inner multipart cut short by its parent's next boundary, with an epilogue.
        HEAD + b'Content-Type: multipart/mixed; boundary="o"\r\n\r\n--o\r\n'
        b'Content-Type: multipart/alternative; boundary="i"\r\n\r\n--i\r\n\r\nx\r\n--i--\r\n'
        b"inner epilogue\r\n\r\n--o--\r\n",
        # 8-bit header and body bytes, folded headers, an empty value.
        b"Subject: caf\xc3\xa9\r\n =?utf-8?q?x?=\r\nX-Empty:\r\nTo:\tbob@b.test\r\n\r\n"
        b"\xff\xfe body",
        # Headers only, with and without the empty line; nothing at all.
        b"Subject: only headers\r\n",
        b"Subject: only headers\r\n\r\n",
        b"",
    ],
)
def test_shapes_built_the_same(raw: bytes) -> None:
    assert check(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b"Subject: lone\rCR\r\n\r\nbody\r\n",
        b"From sender@example.com Mon Jan  1 00:00:00 2024\r\nSubject: mbox\r\n\r\nbody\r\n",
        b" continued\r\nSubject: a\r\n\r\nbody\r\n",
        b"Subject: a\r\nnot a header line\r\n\r\nbody\r\n",
        b"Subject: a\r\n: no name\r\n\r\nbody\r\n",
        HEAD + b"Content-Type: multipart/mixed\r\n\r\nno boundary\r\n",
        HEAD + b'Content-Type: multipart/mixed; boundary="x"\r\n\r\n--x\r\n\r\nnever closed\r\n',
        HEAD + b'Content-Type: multipart/mixed; boundary="x"\r\n\r\nno start\r\n--x--\r\n',
        HEAD + b'Content-Type: multipart/mixed; boundary="x"\r\n\r\n'
        b"--x\r\n--x\r\n\r\nb\r\n--x--\r\n",
        HEAD + b'Content-Type: multipart/mixed; boundary="x"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n--x\r\n\r\nb\r\n--x--\r\n",
        HEAD + b'Content-Type: multipart/digest; boundary="x"\r\n\r\n--x\r\n\r\nb\r\n--x--\r\n',
        HEAD + b"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\nbody\r\n",
        HEAD + b"Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; a\r\n",
    ],
)
def test_unusual_shapes_left_to_the_feed_parser(raw: bytes) -> None:
    assert mimetree.build(raw, POLICY) is None
    assert tree(parse_bytes(raw)) == tree(feed_parser(raw))


def test_big_messages_left_to_the_feed_parser() -> None:
    raw = HEAD + b"\r\n" + b"x" * 76 + b"\r\n"
    assert mimetree.build(raw, POLICY) is not None
    big = raw + (b"y" * 76 + b"\r\n") * (mimetree.MAX_BYTES // 78 + 1)
    assert mimetree.build(big, POLICY) is None


def test_the_parse_and_the_thread_look_up_use_it() -> None:
    raw = generated(random.Random(5))[0]
    assert tree(parse_bytes(raw)) == tree(feed_parser(raw))
    section = leading_header_section(raw)
    expected = BytesParser(policy=POLICY).parsebytes(section, headersonly=True)
    assert tree(parsed_header_section(section)) == tree(expected)


# Generated MIME trees: random headers, nesting, boundaries, line ends, preambles and
# epilogues; a share carries one of the shapes the fast path declines.
_TYPES = ("text/plain", "text/html", "application/pdf", "image/png", "text/calendar")
_DECLINED = (
    "lone_cr",
    "unclosed",
    "doubled",
    "no_start",
    "rfc822",
    "digest",
    "bad_header",
    "mbox",
    "boundary_last",
)


def generated(rng: random.Random) -> tuple[bytes, bool]:
    """One message, and whether it is of a shape the fast path must build."""
    flaw = rng.choice(_DECLINED) if rng.random() < 0.3 else None
    eol = rng.choice(("\r\n", "\n", "\r\n", "mixed"))
    lines: list[str] = []
    if flaw == "mbox":
        lines.append("From someone@example.com Tue Jan  2 00:00:00 2024")
    for name, value in _headers(rng):
        lines += f"{name}: {value}".split("\n")
    if flaw == "bad_header":
        bad = rng.choice(("no colon here", ": empty name", " leading"))
        lines.insert(len(lines) if bad.strip() == bad else 0, bad)
    _entity(rng, lines, depth=0, flaw=flaw, used=set())
    text = ""
    for line in lines:
        end = eol if eol != "mixed" else rng.choice(("\r\n", "\n"))
        text += line + end
    if rng.random() < 0.2:
        text = text[: -len(end)]  # no line end after the last line
    raw = text.encode("utf-8", "surrogateescape")
    if flaw == "lone_cr":
        cut = rng.randrange(len(raw))
        raw = raw[:cut] + b"\rX" + raw[cut:]
    return raw, flaw is None


def _headers(rng: random.Random) -> list[tuple[str, str]]:
    pool = [
        ("From", "Rita Rep <rita@example.com>"),
        ("To", "Ann <ann@client.test>, bob@client.test"),
        ("Subject", rng.choice(("Hello", "Re: offer =?utf-8?q?caf=C3=A9?=", "caf\u00e9 8-bit"))),
        ("Message-ID", f"<{rng.randrange(10**9)}@example.com>"),
        ("Date", "Tue, 02 Jan 2024 10:00:00 +0100"),
        ("X-Folded", "first part\n\tsecond part\n  third"),
        ("X-Empty", ""),
        ("X-Odd_Name.1", "value:with:colons"),
    ]
    return rng.sample(pool, rng.randrange(1, len(pool)))


def _boundary(rng: random.Random, used: set[str]) -> str:
    while True:
        parent = rng.choice(sorted(used)) if used and rng.random() < 0.3 else ""
        tail = rng.choice(("", "=_", "+.?*", "-1", "part", "_x")) + str(rng.randrange(1000))
        boundary = parent + tail
        if boundary not in used:
            used.add(boundary)
            return boundary


def _entity(
    rng: random.Random, lines: list[str], depth: int, flaw: str | None, used: set[str]
) -> None:
    if depth == 0 and flaw in ("rfc822", "digest"):
        kind = flaw
    else:
        kind = "multipart" if depth < 3 and rng.random() < 0.5 else "leaf"
    if kind == "rfc822":
        lines += ["Content-Type: message/rfc822", "", "Subject: inner", "", "inner body"]
        return
    if kind == "leaf":
        lines.append(f"Content-Type: {rng.choice(_TYPES)}; charset=utf-8")
        if rng.random() < 0.3:
            lines.append("Content-Transfer-Encoding: base64")
        lines.append("")
        for _ in range(rng.randrange(0, 6)):
            lines.append(
                rng.choice(
                    (
                        "plain words",
                        "",
                        "a --" + (sorted(used)[0] if used else "b") + " mid-line",
                        "line ending in --" + (sorted(used)[-1] if used else "b"),
                        "--" + (sorted(used)[-1] if used else "b") + "X not a boundary",
                        "caf\u00e9 \u2028 line",
                        "\tindented",
                        "--",
                    )
                )
            )
        return
    boundary = _boundary(rng, used)
    subtype = "digest" if kind == "digest" else rng.choice(("mixed", "alternative", "related"))
    token = boundary.replace("_", "").replace("-", "").isalnum()
    quoted = boundary if token and rng.random() < 0.3 else f'"{boundary}"'
    lines.append(f"Content-Type: multipart/{subtype}; boundary={quoted}")
    lines.append("")
    if rng.random() < 0.4:
        lines += ["This is a multi-part message in MIME format.", ""][: rng.randrange(1, 3)]
    parts = rng.randrange(1, 4)
    for number in range(parts):
        lines.append(f"--{boundary}" + rng.choice(("", "", " ", "\t ")))
        if flaw == "doubled" and depth == 0 and number == 0:
            lines.append(f"--{boundary}")
        if rng.random() < 0.2:
            lines.append("")  # a part without headers
            lines.append("implicit text/plain")
        else:
            _entity(rng, lines, depth + 1, None, used)
    if flaw == "boundary_last" and depth == 0:
        lines.append(f"--{boundary}")
        return
    if flaw == "unclosed" and depth == 0:
        return
    if flaw == "no_start" and depth == 0:
        start = next(i for i, line in enumerate(lines) if line.startswith(f"--{boundary}"))
        del lines[start:]
        lines.append("text where the parts should be")
    lines.append(f"--{boundary}--" + rng.choice(("", "", " ")))
    if rng.random() < 0.4:
        lines += rng.choice((["epilogue"], ["", "epilogue", ""], [""]))


def test_generated_trees() -> None:
    rng = random.Random(20261203)
    built = declined = 0
    for _ in range(1500):
        raw, plain = generated(rng)
        if check(raw):
            built += 1
        else:
            assert not plain, raw
            declined += 1
    # Both ways are exercised: the declined shapes reach the comparison too.
    assert built > 900 and declined > 200, (built, declined)


_MUTATIONS = (b"\r\n", b"\n", b"-", b"--", b" ", b"\t", b":", b"\r\n\r\n", b"\r\n ", b"=",
              b'"', b";", b"\xff", b"From ", b"--x\r\n", b"--x--\r\n")  # fmt: skip


def test_mutated_messages() -> None:
    """Real and generated messages with bytes inserted, deleted, or a boundary line repeated
    elsewhere: where the fast path builds one, it is the feed parser's tree."""
    rng = random.Random(7)
    pool = [path.read_bytes() for path in EML] + [generated(random.Random(i))[0] for i in range(50)]
    built = 0
    for _ in range(1200):
        raw = bytearray(rng.choice(pool))
        for _ in range(rng.randrange(1, 4)):
            at = rng.randrange(len(raw) + 1)
            operation = rng.randrange(3)
            if operation == 0:
                raw[at:at] = rng.choice(_MUTATIONS)
            elif operation == 1:
                del raw[at : at + rng.randrange(1, 4)]
            else:
                boundaries = [line for line in raw.split(b"\n") if line.startswith(b"--")]
                if boundaries:
                    raw[at:at] = rng.choice(boundaries) + b"\n"
        built += check(bytes(raw))
    assert built > 300, built
