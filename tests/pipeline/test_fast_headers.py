"""The parse stage's shortcuts read headers exactly as policy.default does (issue 10)."""

from __future__ import annotations

from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from capture_server.email_policy import POLICY, parsed_header_section
from capture_server.pipeline.parse import _date_value

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
