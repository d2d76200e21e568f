"""store/blobs.py: a big attachment written to the blob table in chunks, on both databases."""

from __future__ import annotations

import base64
import random

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session

from capture_server.pipeline import bodies
from capture_server.pipeline.bodies import EncodedBody
from capture_server.pipeline.message import Attachment
from capture_server.pipeline.parse import parse_message
from capture_server.store.blobs import write_streamed
from capture_server.store.db import writing


def _attachments(*contents: bytes) -> tuple[Attachment, ...]:
    parts = b"".join(
        b"--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(content).replace(b"\n", b"\r\n")
        for content in contents
    )
    raw = (
        b'From: rita@acme.test\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nHi\r\n" + parts + b"--b--\r\n"
    )
    return parse_message(raw, cut_minimum=1024).email.attachments


def _blobs(engine: Engine) -> dict[str, tuple[int, bytes]]:
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT sha256, size, data FROM blob"))
        return {sha: (size, bytes(data)) for sha, size, data in rows}


def test_big_attachments_are_written_in_chunks(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bodies, "CHUNK", 10_000)  # many chunks, split mid-line
    first, second = (random.Random(seed).randbytes(200_001 + seed) for seed in (1, 2))
    big, other = _attachments(first, second)
    assert isinstance(big.body, EncodedBody) and isinstance(other.body, EncodedBody)
    with Session(writing(engine)) as session:
        # A savepoint rolled back takes its rows (and PostgreSQL's staging table) with it.
        with session.begin_nested() as savepoint:
            assert write_streamed(session, big)
            savepoint.rollback()
        assert write_streamed(session, big)
        assert write_streamed(session, other)  # two in one transaction
        assert write_streamed(session, big)  # stored already: left as it is
        session.commit()
    assert _blobs(engine) == {big.sha256: (len(first), first), other.sha256: (len(second), second)}


def test_small_attachments_are_left_to_the_caller(engine: Engine) -> None:
    [small] = _attachments(b"%PDF-1.4 small")
    assert isinstance(small.body, bytes)
    with Session(writing(engine)) as session:
        assert not write_streamed(session, small)
        session.commit()
    assert _blobs(engine) == {}
