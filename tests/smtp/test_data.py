"""DATA read into a spool file: aiosmtpd's exact line rules, one copy of the message."""

from __future__ import annotations

import asyncio

import pytest

from capture_server.smtp.data import SPOOL_IN_MEMORY, DataRead, DataState, read_data


def _read(wire: bytes, size_limit: int | None = None, line_limit: int = 1000) -> DataRead:
    async def run() -> DataRead:
        reader = asyncio.StreamReader(limit=line_limit + 2)
        reader.feed_data(wire)
        reader.feed_eof()
        return await read_data(reader, size_limit, line_limit, lambda: True)

    return asyncio.run(run())


def test_dot_unstuffing_and_the_end_marker() -> None:
    read = _read(b"Subject: x\r\n\r\n..leading dot\r\n.\r\nnot data\r\n")
    assert read == DataRead(DataState.NOMINAL, b"Subject: x\r\n\r\n.leading dot\r\n")
    # Only CRLF "." CRLF ends the data: a bare LF before the dot is not an end (smuggling).
    read = _read(b"a\r\n\n.\r\nMAIL FROM:<x@y.test>\r\n.\r\n")
    assert read.content == b"a\r\n\n.\r\nMAIL FROM:<x@y.test>\r\n"
    assert _read(b"a\n.\nb\r\n.\r\n").content == b"a\n.\nb\r\n"


def test_limits_are_checked_after_the_whole_data_is_read() -> None:
    assert _read(b"x" * 50 + b"\r\n.\r\n", size_limit=40).state is DataState.TOO_MUCH
    assert _read(b"x" * 1200 + b"\r\nok\r\n.\r\n").state is DataState.TOO_LONG
    exactly = b"x" * 998 + b"\r\n"
    assert _read(exactly + b".\r\n").content == exactly


@pytest.mark.parametrize("size", [10, SPOOL_IN_MEMORY + 12345])
def test_small_and_spooled_to_disk_read_back_whole(size: int) -> None:
    lines = [f"{n:07d}".encode() * 10 + b"\r\n" for n in range(size // 72 + 1)]
    body = b"".join(b"." + line if n % 7 == 0 else line for n, line in enumerate(lines))
    read = _read(b"".join(b"." + line if line[:1] == b"." else line for line in
                          body.splitlines(keepends=True)) + b".\r\n")  # fmt: skip
    assert read.state is DataState.NOMINAL and read.content == body
