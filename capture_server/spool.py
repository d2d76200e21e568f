"""Quarantine: messages that crashed the pipeline, kept whole and durable for `replay`.

Write to a temporary file, fsync, rename, fsync the folder: after the rename returns the
message survives a power loss, so answering 250 for it loses nothing (Mailman's switchboard).
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from capture_server.pipeline.message import Envelope


@dataclass(frozen=True)
class QuarantinedMessage:
    id: str
    envelope: dict[str, Any]
    raw: bytes
    error: str


class Quarantine:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def put(self, envelope: Envelope, raw: bytes, error: str) -> str:
        self.folder.mkdir(parents=True, exist_ok=True)
        quarantine_id = f"q_{int(time.time() * 1000):011x}{secrets.token_hex(5)}"
        meta = {
            "mail_from": envelope.mail_from,
            "rcpt": envelope.rcpt,
            "protocol": envelope.protocol,
            "received_at": envelope.received_at.isoformat(),
            "client_ip": envelope.client_ip,
            "helo": envelope.helo,
            "error": error,
        }
        header = json.dumps(meta).encode("utf-8") + b"\n"
        _durable_write(self.folder / f"{quarantine_id}.msg", header + raw)
        return quarantine_id

    def get(self, quarantine_id: str) -> QuarantinedMessage:
        path = self.folder / f"{quarantine_id}.msg"
        if not path.is_file():
            raise KeyError(quarantine_id)
        header, _, raw = path.read_bytes().partition(b"\n")
        meta = json.loads(header)
        return QuarantinedMessage(quarantine_id, meta, raw, str(meta.get("error", "")))

    def ids(self) -> list[str]:
        if not self.folder.is_dir():
            return []
        return sorted(path.stem for path in self.folder.glob("q_*.msg"))

    def drop(self, quarantine_id: str) -> None:
        (self.folder / f"{quarantine_id}.msg").unlink()


def _durable_write(path: Path, data: bytes) -> None:
    temporary = path.with_suffix(".tmp")
    with temporary.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    temporary.rename(path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
