"""Multi-megabyte attachments over real SMTP, on SQLite and PostgreSQL (issue 10: memory).

Big base64 attachments are parsed and stored from the received bytes in chunks
(pipeline/bodies.py, store/blobs.py): the stored rows must be exactly what the email package's
full parse gives, the blob written once per content however often it is sent.
"""

from __future__ import annotations

import base64
import hashlib
import random
from pathlib import Path

from sqlalchemy import text

from capture_server.pipeline.parse import parse_bytes, parsed_from
from capture_server.store.db import make_engine
from tests.conftest import Cli, make_account, start_daemon
from tests.smtp.test_daemon import send

PDF = random.Random(10).randbytes(3 * 1024 * 1024 + 1)  # padded base64
ZIP = random.Random(11).randbytes(600 * 1024)
SMALL = random.Random(12).randbytes(2000)


def _b64(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


def _message(message_id: str, files: list[tuple[str, str, bytes]]) -> bytes:
    head = (
        "From: Rita Rep <rita@acme.test>\r\nTo: Carl Customer <carl@globex.test>\r\n"
        f"Subject: The files\r\nMessage-ID: <{message_id}@mail.acme.test>\r\n"
        "Date: Tue, 03 Nov 2026 09:15:00 +0000\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b0"\r\n\r\n'
        "--b0\r\nContent-Type: text/plain\r\n\r\nHi Carl,\r\n\r\nthe files.\r\n"
    ).encode()
    parts = [
        (
            f'--b0\r\nContent-Type: {kind}; name="{name}"\r\n'
            f'Content-Disposition: attachment; filename="{name}"\r\n'
            "Content-Transfer-Encoding: base64\r\n\r\n"
        ).encode()
        + _b64(data)
        for name, kind, data in files
    ]
    return head + b"".join(parts) + b"--b0--\r\n"


def _rows(database_url: str) -> tuple[dict[str, tuple[int, bytes]], list[tuple[object, ...]]]:
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            blobs = {
                sha: (size, bytes(data))
                for sha, size, data in connection.execute(
                    text("SELECT sha256, size, data FROM blob")
                )
            }
            attachments = [
                tuple(row)
                for row in connection.execute(
                    text(
                        "SELECT engagement_id, position, filename, content_type, size, sha256 "
                        "FROM attachment ORDER BY engagement_id, position"
                    )
                )
            ]
    finally:
        engine.dispose()
    return blobs, attachments


def test_big_attachments_are_stored_byte_for_byte(
    database_url: str, cli: Cli, tmp_path: Path
) -> None:
    archive = tmp_path / "archive"
    daemon = start_daemon(database_url, tmp_path, archive_dir=str(archive))
    try:
        account = make_account(cli)
        files = [
            ("offer.pdf", "application/pdf", PDF),
            ("logo.png", "image/png", SMALL),
            ("data.zip", "application/zip", ZIP),
        ]
        first = _message("big-1", files)
        second = _message("big-2", [files[2], files[0]])  # the same contents in another email
        answers = [send(daemon, raw, [account.bcc], "rita@acme.test") for raw in (first, second)]
        again = send(daemon, first, [account.bcc], "rita@acme.test")
    finally:
        daemon.stop()
    assert [code for code, _ in answers] == [250, 250], answers
    assert all(reply.startswith(b"2.0.0 queued as eng_") for _, reply in answers), answers
    assert again[0] == 250 and b"Already logged" in again[1]

    blobs, attachments = _rows(database_url)
    assert blobs == {hashlib.sha256(data).hexdigest(): (len(data), data) for _, _, data in files}
    # The rows are what the standard library's full parse of each message gives.
    ids = [reply.decode().rsplit(" ", 1)[1] for _, reply in answers]
    expected = [
        (engagement_id, position, a.filename, a.content_type, a.size, a.sha256)
        for engagement_id, raw in zip(ids, (first, second), strict=True)
        for position, a in enumerate(parsed_from(parse_bytes(raw)).email.attachments)
    ]
    assert sorted(attachments) == sorted(expected)
    assert len(attachments) == 5
    # The archive keeps the message as received.
    stored = {path.read_bytes() for path in archive.rglob("*") if path.is_file()}
    assert stored == {first, second}
