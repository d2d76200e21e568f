"""aiosmtpd protocol classes whose every reply goes through replies.translate."""

from __future__ import annotations

from typing import AnyStr

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP

from capture_server.smtp import replies


class CaptureSMTP(SMTP):
    async def push(self, status: AnyStr) -> None:
        if isinstance(status, str):
            status = replies.translate(status)
        await super().push(status)


class CaptureLMTP(LMTP):
    async def push(self, status: AnyStr) -> None:
        if isinstance(status, str):
            status = replies.translate(status)
        await super().push(status)
