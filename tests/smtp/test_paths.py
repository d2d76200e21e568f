"""smtp/paths.py reads plain MAIL/RCPT paths exactly as aiosmtpd's own _getaddr does."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP
from hypothesis import given, settings
from hypothesis import strategies as st

from capture_server.smtp.paths import plain_path


def aiosmtpd_reads(arg: str, limit: int) -> tuple[str | None, str | None]:
    smtp: Any = SimpleNamespace(local_part_limit=limit)  # all _getaddr reads of its server
    result: tuple[str | None, str | None] = SMTP._getaddr(smtp, arg)
    return result


@pytest.mark.parametrize(
    ("arg", "plain"),
    [
        ("<rita@acme.test>", True),
        ("<rita@acme.test> SIZE=10240 BODY=8BITMIME", True),
        ("<rita@acme.test>\t SIZE=1", True),
        ("<rita@acme.test> (a comment) SIZE=1", False),
        ("<first.last+tag@sub.acme.test>", True),
        ("<o'neil@acme.test>", True),
        ("<>", False),  # the null sender: aiosmtpd's business
        ('<"quoted local"@acme.test>', False),
        ("<@relay.test:rita@acme.test>", False),  # a source route
        ("rita@acme.test", False),  # no brackets
        ("<rita@acme.test", False),
        ("<a..b@acme.test>", False),
        ("<rité@acme.test>", False),  # SMTPUTF8
        (" <rita@acme.test>", False),
    ],
)
def test_plain_paths_read_alike(arg: str, plain: bool) -> None:
    found = plain_path(arg, 0)
    assert (found is not None) is plain
    if found is not None:
        assert found == aiosmtpd_reads(arg, 0)


def test_a_local_part_over_the_limit_is_left_to_aiosmtpd() -> None:
    assert plain_path("<abcdef@acme.test>", 5) is None
    assert aiosmtpd_reads("<abcdef@acme.test>", 5) == (None, None)
    assert plain_path("<abcde@acme.test>", 5) == ("abcde@acme.test", "")


# Pieces of paths, plain and not: brackets, specials, blanks, comments, quotes, non-ASCII.
PIECES = [*"<>@.aZ0-_+'!~ \t\"\\(),:;[]é", "SIZE=1", "x.test"]
PATHS = st.tuples(
    st.text(alphabet="a.-+'Zé\"", min_size=1, max_size=8),
    st.text(alphabet="x.-_0[]", min_size=1, max_size=8),
    st.lists(st.sampled_from(PIECES), max_size=6).map("".join),
).map(lambda parts: f"<{parts[0]}@{parts[1]}>{parts[2]}")  # mostly plain, some not


@settings(max_examples=2000, deadline=None)
@given(
    st.one_of(st.lists(st.sampled_from(PIECES), max_size=16).map("".join), PATHS),
    st.sampled_from([0, 3, 64]),
)
def test_whatever_is_read_quickly_is_read_as_aiosmtpd_reads_it(arg: str, limit: int) -> None:
    found = plain_path(arg, limit)
    if found is not None:
        assert found == aiosmtpd_reads(arg, limit)
