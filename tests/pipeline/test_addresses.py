"""The fast address reader agrees with policy.default wherever it answers (issue 10)."""

from __future__ import annotations

from email import policy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from capture_server.pipeline.addresses import plain_mailboxes


def standard(value: str) -> list[tuple[str, str]]:
    header = policy.default.header_fetch_parse("To", value)  # unfolds, as reading a message does
    return [(a.display_name, a.addr_spec) for a in header.addresses]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Wes Quinn <wes@x.test>", [("Wes Quinn", "wes@x.test")]),
        ("Wes \t  Quinn   <wes@x.test>", [("Wes Quinn", "wes@x.test")]),
        ('"Quinn, Wes" <wes@x.test>, b@y.test', [("Quinn, Wes", "wes@x.test"), ("", "b@y.test")]),
        ('"  spaced " <a@b.test>', [("  spaced ", "a@b.test")]),
        ("<a@b.test>", [("", "a@b.test")]),
        ("A.B+tag@Sub.Example.TEST", [("", "A.B+tag@Sub.Example.TEST")]),
        (
            "O'Brien Pat <p@x.io>,\r\n Hana <h@x.io>",
            [("O'Brien Pat", "p@x.io"), ("Hana", "h@x.io")],
        ),
    ],
)
def test_plain_headers_read_like_the_standard_parser(
    value: str, expected: list[tuple[str, str]]
) -> None:
    assert plain_mailboxes(value) == expected
    assert standard(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "Dan F. Smith <d@x.test>",  # obsolete phrase
        "a@b.test (comment)",
        "A <a@b.c>,, B <b@c.d>",
        "a@b.test,",
        ", a@b.test",
        "a@b.test b@c.test",
        "Team: a@b.test, b@c.test;",
        "=?utf-8?q?J=C3=BCrgen?= <j@x.test>",
        "Jürgen <j@x.test>",
        '"Quo\\"ted" <q@x.test>',
        "x <a@[1.2.3.4]>",
        "user",
        "wes@x.test <wes@x.test>",
    ],
)
def test_anything_else_is_left_to_the_standard_parser(value: str) -> None:
    assert plain_mailboxes(value) is None


_pieces = st.sampled_from(
    [
        "Wes",
        "Quinn",
        "O'Brien",
        "a",
        "b.c",
        "x-y",
        " ",
        "  ",
        "\t",
        ",",
        ", ",
        "<",
        ">",
        "@",
        ".",
        '"',
        "\\",
        "(",
        ")",
        ":",
        ";",
        "wes@x.test",
        "h.p+1@sub.y.test",
        "=?",
        "Ü",
        "[1.2.3.4]",
        "\r\n ",
        "<a@b.test>",
        '"Last, First"',
        "-",
        "'",
    ]
)


@settings(max_examples=3000, deadline=None)
@given(st.lists(_pieces, min_size=1, max_size=14).map("".join))
def test_fast_reader_never_disagrees(value: str) -> None:
    fast = plain_mailboxes(value)
    if fast is not None:
        assert fast == standard(value), value
