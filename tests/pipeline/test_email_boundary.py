"""The feed parser's boundary matcher (email_boundary.py) answers as the compiled expression."""

from __future__ import annotations

import email.feedparser
import re
from email import policy
from email.parser import BytesParser

from hypothesis import given, settings
from hypothesis import strategies as st

from capture_server import email_boundary
from capture_server.email_boundary import BoundaryMatcher
from capture_server.email_policy import POLICY
from tests.conftest import DATA

_ENDS = st.sampled_from(["", "--", "-", " ", "\t", "\r", "\n", "\r\n", "x", "--\r\n", "\n\n"])
_BOUNDARIES = st.one_of(
    st.sampled_from(["b", "==_1234", "a.b(c)+d?e*[f]{g}|h^$\\i", "x y", "Grüße", "--"]),
    st.text(min_size=1, max_size=12),
)


def _expression(separator: str) -> re.Pattern[str]:
    # As email.feedparser writes it.
    return re.compile(
        "(?P<sep>" + re.escape(separator) + r")(?P<end>--)?(?P<ws>[ \t]*)(?P<linesep>\r\n|\r|\n)?$"
    )


@settings(max_examples=800, deadline=None)
@given(boundary=_BOUNDARIES, tail=st.lists(_ENDS, max_size=5).map("".join), cut=st.integers(0, 3))
def test_matches_as_the_regular_expression(boundary: str, tail: str, cut: int) -> None:
    separator = "--" + boundary
    for line in (separator + tail, separator[: len(separator) - cut] + tail, tail):
        expected = _expression(separator).match(line)
        got = BoundaryMatcher(separator).match(line)
        if expected is None:
            assert got is None, (separator, line)
            continue
        assert got is not None, (separator, line)
        for name in (0, "sep", "end", "ws", "linesep"):
            assert got.group(name) == expected.group(name), (separator, line, name)


def test_the_feed_parser_uses_it_and_parses_the_same() -> None:
    email_boundary.install()
    shim = email.feedparser.re  # type: ignore[attr-defined]
    assert isinstance(shim.compile(_expression("--b").pattern), BoundaryMatcher)
    assert isinstance(shim.compile(r"\d+"), re.Pattern)  # anything else: re itself
    raw = (
        b'Content-Type: multipart/mixed; boundary="a(b)+c"\r\n\r\npreamble\r\n'
        b"--a(b)+c\r\nContent-Type: text/plain\r\n\r\none\r\n--a(b)+c  \r\n\r\ntwo\r\n"
        b"--a(b)+cX\r\nstill two\r\n--a(b)+c--\r\nepilogue\r\n"
    )
    ours = BytesParser(policy=POLICY).parsebytes(raw)
    email.feedparser.re = re  # type: ignore[attr-defined]
    try:
        theirs = BytesParser(policy=policy.default).parsebytes(raw)
    finally:
        email_boundary.install()
    assert ours.as_bytes() == theirs.as_bytes()
    assert [p.get_payload() for p in ours.iter_parts()] == [
        p.get_payload() for p in theirs.iter_parts()
    ]
    assert len(list(ours.iter_parts())) == 2 and ours.epilogue == theirs.epilogue


def test_every_fixture_parses_the_same_with_and_without_it() -> None:
    fixtures = sorted(DATA.rglob("*.eml"))
    assert len(fixtures) > 20
    email_boundary.install()
    ours = [BytesParser(policy=POLICY).parsebytes(path.read_bytes()) for path in fixtures]
    email.feedparser.re = re  # type: ignore[attr-defined]
    try:
        theirs = [BytesParser(policy=POLICY).parsebytes(path.read_bytes()) for path in fixtures]
    finally:
        email_boundary.install()
    for path, mine, plain in zip(fixtures, ours, theirs, strict=True):
        assert mine.as_bytes() == plain.as_bytes(), path
        assert [(p.get_content_type(), list(map(repr, p.defects))) for p in mine.walk()] == [
            (p.get_content_type(), list(map(repr, p.defects))) for p in plain.walk()
        ], path
