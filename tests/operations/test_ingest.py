"""ingest: dry-run, resumability and clear errors, on an mbox and a Maildir made here."""

from __future__ import annotations

import json
import mailbox
from pathlib import Path

from sqlalchemy import text

from capture_server.store.db import make_engine
from tests.conftest import DATA, Cli, make_account

NO_MESSAGE_ID = b"From: Rita Rep <rita@acme.test>\r\nTo: Olga <olga@initech.test>\r\n" \
    b"Subject: No id\r\nDate: Mon, 09 Nov 2026 10:00:00 +0100\r\n\r\nHello Olga\r\n"  # fmt: skip


def summary(output: str) -> dict[tuple[str, str], int]:
    report = json.loads(output)
    return {(row["decision"], row["reason"]): row["messages"] for row in report["summary"]}


def test_ingest_dry_run_then_resume_skips_what_is_stored(sqlite_cli: Cli, tmp_path: Path) -> None:
    cli = sqlite_cli
    account = make_account(cli)
    box = mailbox.mbox(tmp_path / "sent.mbox")
    for name in ("bcc_simple.eml", "bcc_internal.eml", "bcc_html_attachment.eml"):
        box.add((DATA / name).read_bytes())
    box.add(NO_MESSAGE_ID)
    box.close()
    ingest = ["ingest", "--rcpt", account.bcc, str(tmp_path / "sent.mbox")]

    dry = cli(*ingest, "--dry-run", "--json")
    assert json.loads(dry)["dry_run"] is True and json.loads(dry)["messages"] == 4
    assert summary(dry) == {("log", "logged"): 3, ("ignore", "internal_only"): 1}
    assert cli("engagements", "list", "acme", "--json") == ""
    assert cli("events", "acme", "--json") == ""  # nothing written, not even events
    assert "dry-run: nothing written" in cli(*ingest, "--dry-run")

    first = json.loads(cli(*ingest, "--json"))
    assert (first["messages"], first["skipped_already_stored"]) == (4, 0)
    # Run again (an interrupted import resumed): what has a Message-ID is skipped before the
    # pipeline, logged or not; the one without is recognised by its bytes (raw_sha256).
    again = cli(*ingest, "--json")
    assert summary(again) == {("skipped", "already stored"): 4}
    assert len(cli("engagements", "list", "acme", "--json").splitlines()) == 3
    assert len(cli("events", "acme", "--json").splitlines()) == 4  # nothing new
    assert "already stored" in cli(*ingest)

    # A Maildir holding one stored message and one new one: only the new one goes through.
    maildir = mailbox.Maildir(tmp_path / "Maildir")
    maildir.add((DATA / "bcc_simple.eml").read_bytes())
    maildir.add((DATA / "bcc_role_addresses.eml").read_bytes())
    found = summary(cli("ingest", "--rcpt", account.bcc, str(tmp_path / "Maildir"), "--json"))
    assert found == {("skipped", "already stored"): 1, ("log", "logged"): 1}


def test_ingest_twice_writes_nothing_new_also_without_message_ids(
    cli: Cli, database_url: str, tmp_path: Path
) -> None:
    """A message without a Message-ID went through the pipeline again on every re-run: one
    more capture event each time, and not counted as skipped. Now known by its bytes."""
    account = make_account(cli)
    internal = NO_MESSAGE_ID.replace(b"Olga <olga@initech.test>", b"Tom <tom@acme.test>")
    other = NO_MESSAGE_ID.replace(b"Hello Olga", b"Hello again, Olga")
    messages = [(DATA / "bcc_simple.eml").read_bytes(), NO_MESSAGE_ID, internal, other,
                (DATA / "bcc_internal.eml").read_bytes()]  # fmt: skip
    box = mailbox.mbox(tmp_path / "sent.mbox")
    for raw in messages:
        box.add(raw)
    box.close()
    ingest = ["ingest", "--rcpt", account.bcc, str(tmp_path / "sent.mbox"), "--json"]

    def events_in_store() -> int:
        engine = make_engine(database_url)
        try:
            with engine.connect() as connection:
                found = connection.execute(text("SELECT count(*) FROM capture_event"))
                return int(found.scalar_one())
        finally:
            engine.dispose()

    first = json.loads(cli(*ingest))
    assert (first["messages"], first["skipped_already_stored"]) == (5, 0)
    assert summary(cli(*ingest[:-1], "--dry-run", "--json")) == {
        ("skipped", "already stored"): 5  # a dry run skips them the same way
    }
    assert summary(json.dumps(first)) == {("log", "logged"): 3, ("ignore", "internal_only"): 2}
    assert events_in_store() == 5
    for _ in range(2):
        again = json.loads(cli(*ingest))
        assert (again["messages"], again["skipped_already_stored"]) == (5, 5)
        assert summary(json.dumps(again)) == {("skipped", "already stored"): 5}
        assert events_in_store() == 5, "a re-run wrote capture events"
    assert len(cli("engagements", "list", "acme", "--json").splitlines()) == 3
    # The same bytes to another account are that account's first copy: not skipped.
    beta = make_account(cli, "beta", "acme.test")
    to_beta = json.loads(cli("ingest", "--rcpt", beta.bcc, str(tmp_path / "sent.mbox"), "--json"))
    assert to_beta["skipped_already_stored"] == 0
    assert events_in_store() == 10


def test_ingest_errors_are_one_clear_line(sqlite_cli: Cli, tmp_path: Path) -> None:
    cli = sqlite_cli
    account = make_account(cli)
    for path, expected in (
        (tmp_path / "missing.mbox", "cannot read"),
        (tmp_path, "is not a file, a folder"),  # an empty folder: nothing to ingest is fine
    ):
        if path == tmp_path:
            report = json.loads(cli("ingest", "--rcpt", account.bcc, str(path), "--json"))
            assert report["messages"] == 0
            continue
        output = cli("ingest", "--rcpt", account.bcc, str(path), expect=1)
        assert expected in output and "Traceback" not in output
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "gone.eml").symlink_to(tmp_path / "nowhere.eml")
    (broken / "ok.eml").write_bytes((DATA / "bcc_simple.eml").read_bytes())
    output = cli("ingest", "--rcpt", account.bcc, str(broken))
    assert "cannot read" in output and "gone.eml" in output and "unreadable" in output
    assert "logged" in output and "Traceback" not in output
    assert "not a capture address" in cli(
        "ingest", "--rcpt", "nobody@capture.localhost", str(broken), expect=1
    )
