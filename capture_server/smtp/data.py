"""The DATA phase read into a spool file instead of a list of lines (issue 10: memory).

aiosmtpd keeps every line as its own bytearray (tens of bytes of overhead per 76-byte
line), then joins them: about four times the message at its peak. Here each line is
dot-unstuffed as it arrives and written to a SpooledTemporaryFile (in memory up to
SPOOL_IN_MEMORY, then on disk), and the message is read back once: one copy.

The line handling is aiosmtpd 1.4.6's `SMTP.smtp_DATA`, line for line: only CRLF ends a
line and only CRLF "." CRLF ends the data (no bare-LF smuggling), a line longer than the
stream limit or `line_length_limit` and data over `data_size_limit` are read to the end
and then refused, and a leading dot is removed from every line that has one.
"""

from __future__ import annotations

import asyncio
import enum
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

SPOOL_IN_MEMORY = 1024 * 1024


class DataState(enum.Enum):
    NOMINAL = enum.auto()
    TOO_LONG = enum.auto()
    TOO_MUCH = enum.auto()
    LOST = enum.auto()  # the connection went away: nobody to answer


@dataclass(frozen=True)
class DataRead:
    state: DataState
    content: bytes  # empty unless state is NOMINAL


async def read_data(
    reader: asyncio.StreamReader,
    size_limit: int | None,
    line_length_limit: int,
    connected: Callable[[], bool],
) -> DataRead:
    """Read up to the lone dot line; raises CancelledError when the connection drops."""
    state = DataState.NOMINAL
    size = 0
    fragments: list[bytes] = []
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as spool:
        while True:
            if not connected():
                return DataRead(DataState.LOST, b"")
            try:
                line = await reader.readuntil(b"\r\n")
            except asyncio.LimitOverrunError as error:
                # Longer than the stream limit: drain it, refuse after the end of the data.
                if state is DataState.NOMINAL:
                    state = DataState.TOO_LONG
                spool.seek(0)
                spool.truncate()  # nothing of it will be used: free it now
                line = await reader.read(error.consumed)
            if not fragments and line == b".\r\n":
                break
            size += len(line)
            if state is DataState.NOMINAL and size_limit and size > size_limit:
                state = DataState.TOO_MUCH
                spool.seek(0)
                spool.truncate()
            fragments.append(line)
            if line.endswith(b"\r\n"):
                if state is DataState.NOMINAL:
                    whole = b"".join(fragments) if len(fragments) > 1 else fragments[0]
                    if len(whole) > line_length_limit:
                        state = DataState.TOO_LONG
                        spool.seek(0)
                        spool.truncate()
                    else:
                        # RFC 5321 4.5.2: a leading dot was doubled by the client.
                        spool.write(memoryview(whole)[1:] if whole[:1] == b"." else whole)
                fragments.clear()
        if state is not DataState.NOMINAL:
            return DataRead(state, b"")
        length = spool.tell()
        spool.seek(0)
        content = spool.read(length)
    return DataRead(state, content)
