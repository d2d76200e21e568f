"""A big attachment written to the blob table from its chunks (issue 10: memory).

`INSERT … VALUES (…, :data)` holds the content several times at once: the bytes, the driver's
copy of the parameter, then SQLite's record or libpq's send buffer. An attachment left encoded
in the received bytes (pipeline/bodies.py) is written a chunk at a time instead: SQLite reserves
the row with a zeroblob and fills it through incremental blob I/O; PostgreSQL takes it through
COPY into a temporary table and moves it into `blob` on the server. The row is the same either
way, and so is the rule: a hash already stored is left as it is.
"""

from __future__ import annotations

import sqlite3
import struct
from typing import Any, cast

from sqlalchemy import Connection, text
from sqlmodel import Session

from capture_server.pipeline.message import Attachment

_SQLITE_RESERVE = text(
    "INSERT INTO blob (sha256, size, data) VALUES (:sha256, :size, zeroblob(:size)) "
    "ON CONFLICT (sha256) DO NOTHING RETURNING rowid"
)
_PG_STORED = text("SELECT 1 FROM blob WHERE sha256 = :sha256")
# Per session, emptied at commit; a rolled-back transaction takes it away, hence IF NOT EXISTS.
_PG_STAGE = text(
    "CREATE TEMPORARY TABLE IF NOT EXISTS capture_blob_upload (data bytea NOT NULL) "
    "ON COMMIT DELETE ROWS"
)
_PG_COPY = "COPY capture_blob_upload (data) FROM STDIN (FORMAT BINARY)"
_PG_MOVE = text(
    "INSERT INTO blob (sha256, size, data) SELECT :sha256, :size, data FROM capture_blob_upload "
    "ON CONFLICT (sha256) DO NOTHING"
)
_PG_CLEAR = text("TRUNCATE capture_blob_upload")
# COPY BINARY: signature, flags, header extension length; a row: field count, field length.
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
_COPY_TRAILER = struct.pack("!h", -1)


def write_streamed(session: Session, attachment: Attachment) -> bool:
    """Store the attachment's content from its chunks when it was left encoded; False when it
    was not, or the driver has no way to take it in pieces (the caller inserts it whole)."""
    if isinstance(attachment.body, bytes):
        return False
    connection = session.connection()
    dialect = connection.dialect
    if dialect.name == "sqlite":
        _sqlite(connection, attachment)
        return True
    if dialect.name == "postgresql" and dialect.driver == "psycopg":
        _postgresql(connection, attachment)
        return True
    return False


def _dbapi(connection: Connection) -> Any:
    return connection.connection.dbapi_connection


def _sqlite(connection: Connection, attachment: Attachment) -> None:
    values = {"sha256": attachment.sha256, "size": attachment.size}
    rowid = connection.execute(_SQLITE_RESERVE, values).scalar()
    if rowid is None:
        return  # stored already: the same content, by its hash
    database = cast(sqlite3.Connection, _dbapi(connection))
    with database.blobopen("blob", "data", rowid) as handle:
        for chunk in attachment.chunks():
            handle.write(chunk)


def _postgresql(connection: Connection, attachment: Attachment) -> None:
    values = {"sha256": attachment.sha256, "size": attachment.size}
    if connection.execute(_PG_STORED, values).first() is not None:
        return
    connection.execute(_PG_STAGE)
    with _dbapi(connection).cursor() as cursor, cursor.copy(_PG_COPY) as copy:
        copy.write(_COPY_HEADER + struct.pack("!hi", 1, attachment.size))
        for chunk in attachment.chunks():
            copy.write(chunk)
        copy.write(_COPY_TRAILER)
    connection.execute(_PG_MOVE, values)
    connection.execute(_PG_CLEAR)
