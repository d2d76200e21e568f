"""ingest: dry-run, resumability and clear errors, on an mbox and a Maildir made here."""

from __future__ import annotations

import json
import mailbox
from pathlib import Path

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
    # pipeline, logged or not; the one without is recognised by the pipeline's content hash.
    again = cli(*ingest, "--json")
    assert summary(again) == {("skipped", "already stored"): 3, ("ignore", "duplicate"): 1}
    assert len(cli("engagements", "list", "acme", "--json").splitlines()) == 3
    assert len(cli("events", "acme", "--json").splitlines()) == 5  # 4, and the duplicate's
    assert "already stored" in cli(*ingest)

    # A Maildir holding one stored message and one new one: only the new one goes through.
    maildir = mailbox.Maildir(tmp_path / "Maildir")
    maildir.add((DATA / "bcc_simple.eml").read_bytes())
    maildir.add((DATA / "bcc_role_addresses.eml").read_bytes())
    found = summary(cli("ingest", "--rcpt", account.bcc, str(tmp_path / "Maildir"), "--json"))
    assert found == {("skipped", "already stored"): 1, ("log", "logged"): 1}


def test_ingest_errors_are_one_clear_line(sqlite_cli: Cli, tmp_path: Path) -> None:
    cli = sqlite_cli
    account = make_account(cli)
    for path, expected in (
        (tmp_path / "missing.mbox", "is not a file, a folder, an mbox or a Maildir"),
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
