"""The parse stage's shortcuts read headers exactly as policy.default does (issue 10)."""

from __future__ import annotations

import re
from email import policy
from email.message import Message
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from capture_server import mimetree
from capture_server.email_policy import POLICY, parsed_header_section
from capture_server.pipeline.parse import _MULTIPART, MAX_HEADER_SCAN, _date_value
from capture_server.pipeline.thread import thread_lookup
from capture_server.received import received_keys

DATA = Path(__file__).resolve().parent.parent / "data"
FIXTURES = sorted(DATA.glob("*.eml"))


def with_date(value: str) -> bytes:
    return f"From: a@b.test\r\nDate: {value}\r\nSubject: x\r\n\r\nbody\r\n".encode(
        "utf-8", "surrogateescape"
    )


def standard_date(raw: bytes) -> object:
    message = BytesParser(policy=policy.default).parsebytes(raw)
    header = message["date"]
    return getattr(header, "datetime", None) if header is not None else None


@pytest.mark.parametrize(
    "value",
    [
        "Wed, 01 May 2024 09:00:00 +0000",
        "Wed, 1 May 2024 09:00:00 -0700 (PDT)",
        "1 May 2024 09:00 GMT",
        "Wed, 01 May 2024 09:00:00",  # no zone: naive, as the standard parser gives
        "Wed, 01 May 2024\r\n 09:00:00 +0200",  # folded
        "not a date",
        "",
        "Thu, 31 Feb 2024 10:00:00 +0000",
    ],
)
def test_date_shortcut_matches_the_header_object(value: str) -> None:
    raw = with_date(value)
    message = BytesParser(policy=POLICY).parsebytes(raw)
    assert _date_value(message) == standard_date(raw)


@settings(max_examples=1500, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "Wed,",
                " ",
                "01",
                "1",
                "May",
                "2024",
                "09:00:00",
                "09:00",
                "+0000",
                "-0730",
                "GMT",
                "EST",
                "(PDT)",
                "99",
                ":",
                ",",
                "x",
                "\t",
                "Feb",
                "31",
                "1999",
                "+2500",
            ]
        ),
        max_size=10,
    ).map("".join)
)
def test_date_shortcut_never_disagrees(value: str) -> None:
    raw = with_date(value)
    try:
        expected = standard_date(raw)
    except Exception as error:  # the shortcut must fail alike (the stage records a defect)
        with pytest.raises(type(error)):
            _date_value(BytesParser(policy=POLICY).parsebytes(raw))
        return
    assert _date_value(BytesParser(policy=POLICY).parsebytes(raw)) == expected


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: p.name)
def test_cached_policy_reads_and_writes_messages_like_policy_default(fixture: Path) -> None:
    raw = fixture.read_bytes()
    cached = BytesParser(policy=POLICY).parsebytes(raw)
    plain = BytesParser(policy=policy.default).parsebytes(raw)
    assert cached.as_bytes() == plain.as_bytes()  # folding prints header names as written
    for name in ("from", "to", "cc", "subject", "date", "message-id", "content-type"):
        assert [str(v) for v in cached.get_all(name, [])] == [
            str(v) for v in plain.get_all(name, [])
        ]
    assert _date_value(cached) == standard_date(raw)


def test_header_section_is_parsed_once_and_shared() -> None:
    section = b"From: A <a@b.test>\r\nMessage-ID: <1@b.test>\r\n\r\n"
    first = parsed_header_section(section)
    assert parsed_header_section(bytes(section)) is first
    assert str(first["message-id"]) == "<1@b.test>"


@pytest.fixture
def parsed_sections(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The header sections parsed from now on (they still are): each parse tries
    mimetree.build first, and BytesParser.parsebytes when that declines."""
    calls: list[bytes] = []
    build = mimetree.build

    def counted(raw: bytes, policy: Any, *, headers_only: bool = False) -> Message | None:
        if headers_only:
            calls.append(raw)
        return build(raw, policy, headers_only=headers_only)

    monkeypatch.setattr(mimetree, "build", counted)
    return calls


def test_thread_lookup_and_received_keys_parse_the_header_section_once(
    parsed_sections: list[bytes],
) -> None:
    """Both read the same section before and after the pipeline: one parse serves both."""
    raw = b"From: A <a@b.test>\r\nSubject: Re: once\r\nMessage-ID: <once.7@b.test>\r\n\r\nbody\r\n"
    lookup = thread_lookup(raw)
    keys = received_keys(raw)
    assert len(parsed_sections) == 1
    assert lookup.message_ids == ("<once.7@b.test>",) == (keys.message_id,)
    assert lookup.sender == keys.from_address == "a@b.test"


def test_a_huge_header_section_is_cut_before_it_is_parsed(parsed_sections: list[bytes]) -> None:
    """The thread look-up runs before the parse stage refuses a header section over
    max_header_bytes: it (and the received keys) parse the first MiB of it at most, once."""
    junk = b"".join(b"X-Junk-%d: %s\r\n" % (n, b"j" * 60) for n in range(50_000))  # ~3.7 MB
    raw = b"From: A <a@b.test>\r\nMessage-ID: <top.1@b.test>\r\n" + junk + b"\r\nbody\r\n"
    assert len(raw) > 3 * MAX_HEADER_SCAN
    lookup = thread_lookup(raw)
    keys = received_keys(raw)
    assert len(parsed_sections) == 1 and len(parsed_sections[0]) <= MAX_HEADER_SCAN + 4
    assert lookup.message_ids == ("<top.1@b.test>",) == (keys.message_id,)
    assert lookup.sender == keys.from_address == "a@b.test"


def test_each_header_class_is_built_once() -> None:
    """The standard registry makes a new class per header read (type(): CPU and GC work)."""
    first = POLICY.header_factory("Subject", "one")
    second = POLICY.header_factory("subject", "two " * 400)  # too long for the value cache
    assert type(first) is type(second)
    assert str(second) == str(policy.default.header_factory("subject", "two " * 400))
    assert type(POLICY.header_factory("To", "a@b.test")) is not type(first)


@settings(max_examples=1500, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                b"content-type:",
                b"Content-Type:",
                b"CONTENT-TYPE:",
                b"multipart/",
                b"MultiPart/",
                b" ",
                b"\t",
                b"\r\n",
                b"\n",
                b"x",
                b"-",
                b"content-",
                b"type:",
                b"multi",
                b"part/",
                "\u017f".encode(),
                "\u212a".encode(),
                b"\xff",
            ]
        ),
        max_size=30,
    ).map(b"".join)
)
def test_multipart_count_matches_ascii_ignorecase(raw: bytes) -> None:
    standard = re.compile(rb"content-type:[ \t\r\n]{0,20}multipart/", re.IGNORECASE)
    assert len(_MULTIPART.findall(raw)) == len(standard.findall(raw))
