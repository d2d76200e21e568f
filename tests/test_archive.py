"""Raw archive: written before the 250, deduplicated, purged past retention, replayed after
a rule change (idempotent, or --rebuild), on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import os
import smtplib
import time
from pathlib import Path

from sqlalchemy import text

from capture_server.store.db import make_engine
from tests.conftest import Cli, make_account, read_data, start_daemon


def archived_files(folder: Path) -> dict[str, bytes]:
    return {path.stem: path.read_bytes() for path in folder.glob("??/*.eml")}


def event_keys(database_url: str) -> list[tuple[str, str | None]]:
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT reason, archive_key FROM capture_event ORDER BY received_at, id")
            )
            return [(row[0], row[1]) for row in rows]
    finally:
        engine.dispose()


def message(marker: str, to: str = "carl@globex.test") -> bytes:
    return (
        f"From: Rita Rep <rita@acme.test>\r\nTo: {to}\r\nSubject: Proposal {marker}\r\n"
        f"Date: Tue, 03 Nov 2026 10:15:00 +0100\r\nMessage-ID: <{marker}@mail.acme.test>\r\n"
        "\r\nHi,\r\n\r\nhere is our proposal.\r\n"
    ).encode()


def test_daemon_archives_before_acknowledging_once_per_content(
    database_url: str, cli: Cli, tmp_path: Path
) -> None:
    account = make_account(cli)
    archive = tmp_path / "archive"
    daemon = start_daemon(database_url, tmp_path, archive_dir=str(archive))
    try:
        raw = message("archived-1")
        for _ in range(2):  # the second delivery is a duplicate: same bytes, one file
            with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=30) as client:
                client.ehlo("mta.test")
                client.mail("rita@acme.test")
                assert client.rcpt(account.bcc)[0] == 250
                code, _reply = client.data(raw)
                assert code == 250
        with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=30) as client:
            client.ehlo("mta.test")
            client.mail("mallory@elsewhere.test")
            assert client.rcpt(account.bcc)[0] == 250
            refused = read_data("bcc_unknown_sender.eml")
            assert client.data(refused)[0] == 550  # not acknowledged: not archived
    finally:
        assert daemon.stop() == 0
    files = archived_files(archive)
    assert len(files) == 1
    ((key, content),) = files.items()
    assert hashlib.sha256(content).hexdigest() == key
    assert b"<archived-1@mail.acme.test>" in content
    assert not list(archive.rglob("*.tmp"))
    recorded = event_keys(database_url)
    assert recorded == [("logged", key), ("duplicate", key), ("sender_not_user", None)]


def test_replay_applies_new_rules_idempotently_and_rebuild_recreates(
    database_url: str, cli: Cli, tmp_path: Path
) -> None:
    account = make_account(cli)
    archive = tmp_path / "archive"
    env = {"CAPTURE_SERVER_ARCHIVE_DIR": str(archive)}
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "globex.eml").write_bytes(message("to-globex"))
    (folder / "initech.eml").write_bytes(message("to-initech", "ivy@initech.test"))
    cli("never-log", "add", account.slug, "globex.test")
    for name in ("globex.eml", "initech.eml"):
        cli("ingest", "--rcpt", account.bcc, str(folder / name), env_extra=env)
    assert [reason for reason, _ in event_keys(database_url)] == ["never_log", "logged"]
    assert all(key for _, key in event_keys(database_url))
    logged = [
        json.loads(line) for line in cli("engagements", "list", "acme", "--json").splitlines()
    ]
    assert [e["message_id"] for e in logged] == ["<to-initech@mail.acme.test>"]

    # The rule that kept globex out is lifted: replay logs it, leaves the other alone.
    cli("never-log", "remove", account.slug, "globex.test")
    replay = ("replay", "--since", "2000-01-01", "--account", "acme", "--json")
    first = [json.loads(line) for line in cli(*replay, env_extra=env).splitlines()]
    assert [(r["decision"], r["reason"]) for r in first] == [
        ("log", "logged"),
        ("ignore", "duplicate"),
    ]
    assert first[1]["engagement_id"] == logged[0]["id"]
    again = [json.loads(line) for line in cli(*replay, env_extra=env).splitlines()]
    assert [r["reason"] for r in again] == ["duplicate", "duplicate"]  # idempotent
    rows = [json.loads(line) for line in cli("engagements", "list", "acme", "--json").splitlines()]
    assert len(rows) == 2
    ids = {row["message_id"]: row["id"] for row in rows}

    # --rebuild: initech is now never-logged, so its engagement goes; globex is re-created.
    cli("never-log", "add", account.slug, "initech.test")
    rebuilt = [json.loads(line) for line in cli(*replay, "--rebuild", env_extra=env).splitlines()]
    by_reason = {r["reason"]: r for r in rebuilt}
    assert set(by_reason) == {"logged", "never_log"}
    assert by_reason["logged"]["deleted_engagement_id"] == ids["<to-globex@mail.acme.test>"]
    assert by_reason["logged"]["engagement_id"] not in ids.values()
    assert by_reason["never_log"]["deleted_engagement_id"] == ids["<to-initech@mail.acme.test>"]
    rows = [json.loads(line) for line in cli("engagements", "list", "acme", "--json").splitlines()]
    assert [(r["id"], r["message_id"]) for r in rows] == [
        (by_reason["logged"]["engagement_id"], "<to-globex@mail.acme.test>")
    ]
    assert rows[0]["contacts"]  # the re-created engagement is linked again
    table = cli(*replay[:-1], "--rebuild", env_extra=env)  # the table: one line each
    assert table.count("replaces eng_") == 1 and "replayed 2 archived message(s)" in table
    assert len(cli("engagements", "list", "acme", "--json").splitlines()) == 1


def test_purge_keeps_what_younger_events_refer_to(sqlite_cli: Cli, tmp_path: Path) -> None:
    cli = sqlite_cli
    account = make_account(cli)
    archive = tmp_path / "archive"
    env = {"CAPTURE_SERVER_ARCHIVE_DIR": str(archive)}
    eml = tmp_path / "one.eml"
    eml.write_bytes(message("purge-me"))
    cli("ingest", "--rcpt", account.bcc, str(eml), env_extra=env)
    orphan = archive / "ab" / ("ab" + "0" * 62 + ".eml")  # no event refers to it
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"Subject: orphan\r\n\r\n")
    ten_days_ago = time.time() - 10 * 86400
    for path in archive.glob("??/*.eml"):
        os.utime(path, (ten_days_ago, ten_days_ago))
    assert len(archived_files(archive)) == 2

    report = json.loads(cli("archive", "purge", "--older-than", "5", "--json", env_extra=env))
    assert report == {"purged": 1, "kept": 1, "older_than_days": 5.0}
    assert not orphan.exists() and len(archived_files(archive)) == 1
    # Retention 0 (keep forever) purges nothing without --older-than.
    kept = cli("archive", "purge", env_extra={**env, "CAPTURE_SERVER_ARCHIVE_RETENTION_DAYS": "0"})
    assert "nothing purged" in kept and len(archived_files(archive)) == 1
    # The event is older than a zero-day retention: the file goes, and replay says so.
    report = json.loads(cli("archive", "purge", "--older-than", "0", "--json", env_extra=env))
    assert report["purged"] == 1 and not archived_files(archive)
    missing = cli("replay", "--since", "2000-01-01", "--account", "acme", expect=1, env_extra=env)
    assert "purged, skipped" in missing


def test_archive_commands_explain_their_mistakes(sqlite_cli: Cli, tmp_path: Path) -> None:
    make_account(sqlite_cli)
    env = {"CAPTURE_SERVER_ARCHIVE_DIR": str(tmp_path / "archive")}
    off = sqlite_cli("archive", "purge", expect=1)
    assert "archive is off" in off and "Traceback" not in off
    assert "--account" in sqlite_cli("replay", "--since", "2026-01-01", expect=1, env_extra=env)
    bad = sqlite_cli("replay", "--since", "yesterday", "--account", "acme", expect=1,
                     env_extra=env)  # fmt: skip
    assert "not a date" in bad
    assert "nobody" in sqlite_cli(
        "replay", "--since", "2026-01-01", "--account", "nobody", expect=1, env_extra=env
    )
    nothing = sqlite_cli("replay", "--since", "2026-01-01", "--account", "acme", env_extra=env)
    assert "replayed 0 archived message(s)" in nothing
