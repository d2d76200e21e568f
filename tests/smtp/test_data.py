"""DATA read into a spool file a block at a time: aiosmtpd's exact line rules, one copy."""

from __future__ import annotations

import asyncio
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from capture_server.smtp import data
from capture_server.smtp.data import SPOOL_IN_MEMORY, DataState, read_data

Result = tuple[DataState, bytes, bytes]  # state, message (when accepted), what the reader kept


def _read(
    wire: bytes,
    size_limit: int | None = None,
    line_limit: int = 1000,
    packets: list[int] | None = None,
) -> Result:
    """read_data over a real StreamReader, `wire` arriving in packets of the given sizes."""

    async def run() -> Result:
        reader = asyncio.StreamReader(limit=line_limit + 2)  # as aiosmtpd sizes it

        async def arrive() -> None:
            position = 0
            for size in packets or [len(wire)]:
                reader.feed_data(wire[position : position + size])
                position += size
                await asyncio.sleep(0)
            reader.feed_data(wire[position:])
            reader.feed_eof()

        sender = asyncio.create_task(arrive())
        read = await read_data(reader, size_limit, line_limit, lambda: True)
        await sender
        kept = await reader.read()
        return read.state, read.take(), kept

    return asyncio.run(run())


def _line_by_line(wire: bytes, size_limit: int | None, line_limit: int) -> tuple[Result, bool]:
    """aiosmtpd 1.4.6's rules, one line at a time (the oracle); also whether both limits
    were crossed (then either refusal is right: a block names the size first)."""
    state, size, content, position = DataState.NOMINAL, 0, [], 0
    too_long = too_much = False
    while True:
        end = wire.find(b"\r\n", position)
        if end < 0:
            return (DataState.LOST, b"", b""), False
        line = wire[position : end + 2]
        position = end + 2
        if line == b".\r\n":
            break
        size += len(line)
        too_much = too_much or bool(size_limit and size > size_limit)
        too_long = too_long or len(line) > line_limit
        if state is DataState.NOMINAL and too_much:
            state = DataState.TOO_MUCH
        if state is DataState.NOMINAL and too_long:
            state = DataState.TOO_LONG
        content.append(line[1:] if line[:1] == b"." else line)
    accepted = b"".join(content) if state is DataState.NOMINAL else b""
    return (state, accepted, wire[position:]), too_long and too_much


def test_dot_unstuffing_and_the_end_marker() -> None:
    state, message, kept = _read(b"Subject: x\r\n\r\n..leading dot\r\n.\r\nnot data\r\n")
    assert (state, message) == (DataState.NOMINAL, b"Subject: x\r\n\r\n.leading dot\r\n")
    assert kept == b"not data\r\n"  # a pipelined command stays for the command loop
    # Only CRLF "." CRLF ends the data: a bare LF before the dot is not an end (smuggling).
    read = _read(b"a\r\n\n.\r\nMAIL FROM:<x@y.test>\r\n.\r\n")
    assert read[1] == b"a\r\n\n.\r\nMAIL FROM:<x@y.test>\r\n"
    assert _read(b"a\n.\nb\r\n.\r\n")[1] == b"a\n.\nb\r\n"
    assert _read(b".\r\nQUIT\r\n") == (DataState.NOMINAL, b"", b"QUIT\r\n")  # empty message
    assert _read(b"\r\n.\r\n") == (DataState.NOMINAL, b"\r\n", b"")
    assert _read(b"..\r\n.\r\n")[1] == b".\r\n"


def test_a_connection_closed_before_the_end_is_lost() -> None:
    assert _read(b"Subject: x\r\n\r\nhalf a mess")[0] is DataState.LOST
    assert _read(b".\r")[0] is DataState.LOST


def test_limits_are_checked_after_the_whole_data_is_read() -> None:
    assert _read(b"x" * 50 + b"\r\n.\r\nQUIT\r\n", size_limit=40) == (
        DataState.TOO_MUCH, b"", b"QUIT\r\n",
    )  # fmt: skip
    assert _read(b"x" * 1200 + b"\r\nok\r\n.\r\n")[0] is DataState.TOO_LONG
    exactly = b"x" * 998 + b"\r\n"
    assert _read(exactly + b".\r\n")[1] == exactly
    assert _read(b"x" * 999 + b"\r\n.\r\n")[0] is DataState.TOO_LONG
    assert _read(b"x" * 5000 + b"\r\n.\r\n", packets=[7] * 800)[0] is DataState.TOO_LONG


@pytest.mark.parametrize("size", [10, SPOOL_IN_MEMORY + 12345])
def test_small_and_spooled_to_disk_read_back_whole(size: int) -> None:
    lines = [f"{n:07d}".encode() * 10 + b"\r\n" for n in range(size // 72 + 1)]
    body = b"".join(b"." + line if n % 7 == 0 else line for n, line in enumerate(lines))
    wire = b"".join(b"." + line if line[:1] == b"." else line for line in
                    body.splitlines(keepends=True)) + b".\r\n"  # fmt: skip
    assert _read(wire) == (DataState.NOMINAL, body, b"")
    packets = [random.Random(size).randint(1, 300) for _ in range(len(wire) // 150)]
    assert _read(wire, packets=packets) == (DataState.NOMINAL, body, b"")


# Pieces that make every boundary case likely: dots at line starts, CR and LF alone, end
# markers early, lines near the limit.
_PIECES = st.sampled_from(
    [b".", b"..", b"\r\n", b"\r", b"\n", b"a", b"xyz", b".\r\n", b"\r\n.", b"\r\n.\r\n",
     b"\r\n..\r\n", b"QUIT\r\n", b"0123456789abcdef"]
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(
    body=st.lists(_PIECES, max_size=40).map(b"".join),
    ending=st.sampled_from([b".\r\n", b"\r\n.\r\n", b"", b"\r\n.\r"]),
    after=st.sampled_from([b"", b"QUIT\r\n", b"RSET\r\nMAIL FROM:<a@b.test>\r\n"]),
    size_limit=st.sampled_from([None, 5, 30, 200]),
    line_limit=st.sampled_from([4, 10, 1000]),
    read_ahead=st.sampled_from([1, 6, 64 * 1024]),
    seed=st.integers(0, 2**16),
)
def test_block_reading_matches_line_by_line(
    body: bytes,
    ending: bytes,
    after: bytes,
    size_limit: int | None,
    line_limit: int,
    read_ahead: int,
    seed: int,
) -> None:
    wire = body + ending + after
    expected, either_refusal = _line_by_line(wire, size_limit, line_limit)
    chance = random.Random(seed)
    packets = [chance.randint(1, 9) for _ in range(len(wire) // 3)]
    before = data.READ_AHEAD
    data.READ_AHEAD = read_ahead  # small: the reader's LimitOverrunError path, block by block
    try:
        got = _read(wire, size_limit, line_limit, packets)
    finally:
        data.READ_AHEAD = before
    if either_refusal:
        assert got[0] in (DataState.TOO_LONG, DataState.TOO_MUCH) and got[1:] == expected[1:]
    elif expected[0] is DataState.LOST:
        assert got[0] is DataState.LOST
    else:
        assert got == expected
