"""The CLI contract of DESIGN.md section 4, through the real console script and in-process."""

from __future__ import annotations

import json
import mailbox
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import DATA, Cli, make_account


def test_account_add_json_prints_the_three_addresses(cli: Cli) -> None:
    created = json.loads(
        cli("account", "add", "acme", "--name", "Acme", "--domain", "acme.test", "--json")
    )
    assert set(created) >= {"bcc_address", "forward_address", "reply_address"}
    assert all(value.endswith("@capture.localhost") for value in created.values() if "@" in value)
    assert len(set(created.values())) == len(created)


def test_dry_run_json_decides_without_writing(cli: Cli) -> None:
    account = make_account(cli)
    files = [DATA / "bcc_simple.eml", DATA / "bcc_unknown_sender.eml", DATA / "bcc_internal.eml"]
    lines = cli("dry-run", "--rcpt", account.bcc, *map(str, files), "--json").splitlines()
    decisions = [json.loads(line) for line in lines]
    assert [d["file"] for d in decisions] == [str(f) for f in files]
    assert [(d["decision"], d["reason"]) for d in decisions] == [
        ("log", "logged"), ("reject", "sender_not_user"), ("ignore", "internal_only")
    ]  # fmt: skip
    logged = decisions[0]
    assert logged["smtp_reply"].startswith("250 2.0.0")
    assert logged["engagement"]["contacts"] == [
        "carl@globex.test", "dana@globex.test", "frank.free@gmail.com"
    ]  # fmt: skip
    assert decisions[1]["engagement"] is None and decisions[1]["smtp_reply"].startswith("550 5.7.1")
    assert {"stage", "outcome", "detail"} == set(logged["trace"][0])
    assert cli("engagements", "list", account.slug, "--json") == ""
    assert cli("contacts", "list", account.slug, "--json") == ""


def test_ingest_eml_mbox_and_maildir(cli: Cli, tmp_path: Path) -> None:
    account = make_account(cli)
    cli("ingest", "--rcpt", account.bcc, str(DATA / "bcc_simple.eml"))
    box = mailbox.mbox(tmp_path / "sent.mbox")
    box.add((DATA / "bcc_html_attachment.eml").read_bytes())
    box.add((DATA / "bcc_simple.eml").read_bytes())  # already logged: skipped (resumable)
    box.close()
    output = cli("ingest", "--rcpt", account.bcc, str(tmp_path / "sent.mbox"))
    assert "already stored" in output and "logged" in output
    maildir = mailbox.Maildir(tmp_path / "Maildir")
    maildir.add((DATA / "bcc_role_addresses.eml").read_bytes())
    cli("ingest", "--rcpt", account.bcc, str(tmp_path / "Maildir"))
    rows = cli("engagements", "list", account.slug, "--json").splitlines()
    assert len(rows) == 3


def test_user_errors_are_one_clear_line(cli: Cli) -> None:
    make_account(cli)
    output = cli("user", "add", "nope", "x@y.test", expect=1)
    assert "no account 'nope'" in output and "Traceback" not in output
    output = cli("dry-run", "--rcpt", "missing@capture.localhost", str(DATA / "bcc_simple.eml"),
                 expect=1)  # fmt: skip
    assert "not a capture address" in output
    output = cli("ingest", "--rcpt", "x@capture.localhost", "/no/such/file", expect=1)
    output = cli("ingest", "--rcpt", make_account(cli, "beta", "beta.test").bcc, "/no/such/file",
                 expect=1)  # fmt: skip
    assert "cannot read /no/such/file: no such file or folder" in output


def test_a_free_mail_domain_is_no_account_domain(cli: Cli) -> None:
    """Every address of an account domain is the account's own: with gmail.com, mail with
    anyone there would be internal and never logged. Refused with a clear line."""
    output = cli("account", "add", "solo", "--name", "Solo", "--domain", "solo.test",
                 "--domain", "GMail.com", expect=1)  # fmt: skip
    assert "gmail.com is a free-mail domain" in output and "Traceback" not in output
    assert "solo" not in cli("account", "list")
    make_account(cli, "solo", "solo.test")  # its own domain is fine


def test_a_mistyped_sqlite_path_is_reported_and_not_created(tmp_path: Path) -> None:
    """Connecting would create an empty file behind a typo; init still creates one."""
    typo = tmp_path / "captrue.db"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "capture_server", "--database-url", f"sqlite:///{typo}",
             *args], capture_output=True, text=True, timeout=60, cwd=tmp_path,
        )  # fmt: skip

    result = run("account", "list")
    assert result.returncode == 1 and f"no database file {typo}" in result.stderr
    assert not typo.exists()
    assert run("init").returncode == 0
    assert run("account", "list").returncode == 0


def test_console_script_reports_bad_settings_and_databases(tmp_path: Path) -> None:
    env = {**os.environ, "CAPTURE_SERVER_SMTP_LISTEN": "not-a-port"}
    result = subprocess.run(
        [sys.executable, "-m", "capture_server", "serve"],
        env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2
    assert "smtp_listen" in result.stderr and "Traceback" not in result.stderr
    result = subprocess.run(
        [sys.executable, "-m", "capture_server", "--database-url", "mysql://x/y", "init"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2 and "not supported" in result.stderr
    result = subprocess.run(
        [sys.executable, "-m", "capture_server", "--database-url",
         f"sqlite:///{tmp_path}/fresh.db", "contacts", "list", "acme"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1 and "capture-server init" in result.stderr
    config = tmp_path / "capture.toml"
    config.write_text('capture_domain = "capture.example.com"\n')
    database = f"sqlite:///{tmp_path}/fresh.db"
    for args in (["init"], ["account", "add", "acme", "--name", "A", "--domain", "a.test",
                            "--json"]):  # fmt: skip
        result = subprocess.run(
            [sys.executable, "-m", "capture_server", "--config", str(config),
             "--database-url", database, *args],
            capture_output=True, text=True, timeout=60, cwd=tmp_path,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["bcc_address"].endswith("@capture.example.com")


def test_account_settings_show_set_reset(cli: Cli) -> None:
    make_account(cli)
    shown = json.loads(cli("account", "settings", "show", "acme", "--json"))
    assert shown["contact_policy"] == "all" and shown["max_deals"] == 5
    assert "noreply" in shown["role_local_parts"] and "gmail.com" in shown["free_mail_domains"]
    cli("account", "settings", "set", "acme", "contact_policy", "outgoing")
    cli("account", "settings", "set", "acme", "max_deals", "2")
    cli("account", "settings", "set", "acme", "free_mail_domains", "gmail.com,example.org")
    cli("account", "settings", "set", "acme", "fallback_owner", "sam@acme.test")
    shown = json.loads(cli("account", "settings", "show", "acme", "--json"))
    assert (shown["contact_policy"], shown["max_deals"]) == ("outgoing", 2)
    assert shown["free_mail_domains"] == ["example.org", "gmail.com"]
    assert shown["fallback_owner"] == "sam@acme.test"
    cli("account", "settings", "reset", "acme", "max_deals")
    assert json.loads(cli("account", "settings", "show", "acme", "--json"))["max_deals"] == 5
    assert "contact_policy" in cli("account", "settings", "set", "acme", "contact_policy",
                                   "sometimes", expect=1)  # fmt: skip
    assert "unknown setting" in cli("account", "settings", "set", "acme", "colour", "red",
                                    expect=1)  # fmt: skip
    assert "no user" in cli("account", "settings", "set", "acme", "fallback_owner",
                            "ghost@acme.test", expect=1)  # fmt: skip


def test_contact_policy_outgoing_from_settings_reaches_the_pipeline(cli: Cli) -> None:
    account = make_account(cli)
    cli("account", "settings", "set", "acme", "contact_policy", "off")
    cli("ingest", "--rcpt", account.bcc, str(DATA / "bcc_simple.eml"))
    assert cli("contacts", "list", "acme", "--json") == ""
    [row] = cli("engagements", "list", "acme", "--json").splitlines()
    assert json.loads(row)["contacts"] == []


def test_dry_run_under_a_policy_that_creates_no_contacts_lists_the_existing_ones(
    cli: Cli,
) -> None:
    """What the engagement would be linked to: the participants already contacts, not all."""
    account = make_account(cli)
    cli("ingest", "--rcpt", account.bcc, str(DATA / "bcc_html_attachment.eml"))  # carl
    cli("account", "settings", "set", "acme", "contact_policy", "off")
    [line] = cli(
        "dry-run", "--rcpt", account.bcc, str(DATA / "bcc_simple.eml"), "--json"
    ).splitlines()
    engagement = json.loads(line)["engagement"]
    assert engagement["contacts"] == ["carl@globex.test"]
    assert engagement["contacts_not_created"] == ["dana@globex.test", "frank.free@gmail.com"]
    cli("account", "settings", "set", "acme", "contact_policy", "all")
    [line] = cli(
        "dry-run", "--rcpt", account.bcc, str(DATA / "bcc_simple.eml"), "--json"
    ).splitlines()
    engagement = json.loads(line)["engagement"]  # every participant: missing ones are created
    assert len(engagement["contacts"]) == 3 and "contacts_not_created" not in engagement


def test_the_capture_address_on_to_or_cc_is_no_contact_and_no_participant(
    cli: Cli, tmp_path: Path
) -> None:
    """Reps often put the BCC address on Cc (HubSpot allows To, Cc or Bcc): it is the
    daemon's own address, neither a contact, nor a company, nor a recipient of the email."""
    account = make_account(cli)
    message = tmp_path / "cc.eml"
    message.write_text(
        "From: Rita Rep <rita@acme.test>\nTo: Carl <carl@globex.test>\n"
        f"Cc: {account.bcc.upper()}, {account.reply}\nSubject: Offer\n"
        "Date: Thu, 05 Nov 2026 08:30:00 +0000\nMessage-ID: <cc-capture@acme.test>\n\nHi Carl\n"
    )
    cli("ingest", "--rcpt", account.bcc, str(message))
    [row] = cli("engagements", "list", account.slug, "--json").splitlines()
    engagement = json.loads(row)
    assert engagement["contacts"] == ["carl@globex.test"]
    assert engagement["companies"] == ["globex.test"]
    assert engagement["cc"] == []
    [contact] = cli("contacts", "list", account.slug, "--json").splitlines()
    assert json.loads(contact)["addresses"] == ["carl@globex.test"]
    only_capture = tmp_path / "internal.eml"
    only_capture.write_text(
        f"From: Rita Rep <rita@acme.test>\nTo: sam@acme.test\nCc: {account.bcc}\n"
        "Subject: Note\nMessage-ID: <note@acme.test>\n\nfor the team\n"
    )
    [line] = cli("dry-run", "--rcpt", account.bcc, str(only_capture), "--json").splitlines()
    decision = json.loads(line)
    assert (decision["decision"], decision["reason"]) == ("ignore", "internal_only")
    assert decision["smtp_reply"] == "250 2.0.0 Accepted, not logged: internal_only (dry-run)"


def test_text_output_prints_brackets_from_mail_and_paths_as_they_are(
    cli: Cli, tmp_path: Path
) -> None:
    """Subjects, names and file names are data, not rich markup: '[/b]' once crashed the
    table with a traceback and '[ext]' vanished from it."""
    account = make_account(cli)
    message = tmp_path / "offer[red].eml"
    message.write_text(
        'From: Rita Rep <rita@acme.test>\nTo: "[ext] Carl" <carl@globex.test>\n'
        "Subject: [ext] [/b]\nMessage-ID: <brackets@acme.test>\n\nHi\n"
    )
    assert f"{message}: log (logged)" in cli("dry-run", "--rcpt", account.bcc, str(message))
    cli("ingest", "--rcpt", account.bcc, str(message))
    for command in (["engagements", "list"], ["contacts", "list"], ["events"]):
        table = cli(*command, account.slug)  # a narrow table may wrap a cell between words
        assert "[ext]" in table and ("[/b]" in table or command[0] == "contacts")
    output = cli("dry-run", "--rcpt", account.bcc, str(tmp_path / "gone[/b].eml"), expect=1)
    assert f"cannot read {tmp_path / 'gone[/b].eml'}" in output


def test_a_never_logged_original_sender_of_a_forward_is_never_a_contact(
    cli: Cli, tmp_path: Path
) -> None:
    """The never-log list: addresses 'who are never created as contacts' (DESIGN.md section 1),
    also when one is the original sender of a forward logged for its other participants."""
    account = make_account(cli)
    cli("never-log", "add", account.slug, "hooli.test")
    forward = tmp_path / "fwd.eml"
    forward.write_text(
        f"From: Rita Rep <rita@acme.test>\nTo: {account.forward}\nSubject: Fwd: terms\n"
        "Message-ID: <fwd-never-log@acme.test>\n\nFYI\n\n"
        "---------- Forwarded message ---------\nFrom: Gavin <gavin@eu.hooli.test>\n"
        "Date: Thu, 05 Nov 2026 07:30:00 +0000\nSubject: terms\n"
        "To: Rita Rep <rita@acme.test>, Vera <vera@vendor.test>\n\nour terms\n"
    )
    [line] = cli("dry-run", "--rcpt", account.forward, str(forward), "--json").splitlines()
    assert json.loads(line)["engagement"]["contacts"] == ["vera@vendor.test"]
    cli("ingest", "--rcpt", account.forward, str(forward))
    [row] = cli("engagements", "list", account.slug, "--json").splitlines()
    assert (json.loads(row)["contacts"], json.loads(row)["companies"]) == (
        ["vera@vendor.test"], ["vendor.test"]
    )  # fmt: skip
    contacts = [json.loads(c)["addresses"] for c in cli("contacts", "list", account.slug,
                                                         "--json").splitlines()]  # fmt: skip
    assert contacts == [["vera@vendor.test"]]


def test_dry_run_and_ingest_refuse_a_message_over_max_message_bytes_as_the_daemon_does(
    cli: Cli,
) -> None:
    """The daemon answers 552 5.3.4 at DATA above max_message_bytes: dry-run says so, and
    ingest (messages 'as if they had arrived by SMTP') writes nothing for it."""
    account = make_account(cli)
    small = {"CAPTURE_SERVER_MAX_MESSAGE_BYTES": "200"}
    files = [str(DATA / "bcc_simple.eml")]
    [line] = cli("dry-run", "--rcpt", account.bcc, *files, "--json", env_extra=small).splitlines()
    decision = json.loads(line)
    assert (decision["decision"], decision["reason"]) == ("reject", "message_too_large")
    assert decision["smtp_reply"].startswith("552 5.3.4") and decision["engagement"] is None
    assert decision["trace"][0]["outcome"] == "reject"
    output = cli("ingest", "--rcpt", account.bcc, *files, "--json", env_extra=small)
    assert "over max_message_bytes (200); not ingested" in output  # on stderr, per message
    summary = json.loads(output.splitlines()[-1])
    assert summary["summary"] == [
        {"decision": "reject", "reason": "message_too_large", "messages": 1}
    ]
    assert cli("engagements", "list", account.slug, "--json") == ""
    assert cli("events", account.slug, "--json") == ""


def test_a_samsung_forward_keeps_the_original_us_date(sqlite_cli: Cli) -> None:
    """'11/5/26 16:45 (GMT-05:00)' in a forward sent on 6 Nov 2026 is 5 Nov, not 11 May."""
    account = make_account(sqlite_cli)
    files = [str(DATA / "fwd_samsung_android.eml"), str(DATA / "fwd_ionos_fr.eml")]
    lines = sqlite_cli("dry-run", "--rcpt", account.forward, *files, "--json").splitlines()
    dates = [json.loads(line)["engagement"]["occurred_at"][:10] for line in lines]
    assert dates == ["2026-11-05", "2026-11-05"]


def test_piped_tables_keep_whole_ids_subjects_and_addresses(
    sqlite_cli: Cli, tmp_path: Path
) -> None:
    """Text output into a pipe is as wide as its rows (as `ps` prints): rich's 80 columns cut
    ids and addresses, and a script's grep or awk found half of them. COLUMNS still rules."""
    account = make_account(sqlite_cli)
    subject = "Renewal of the enterprise agreement for all European subsidiaries, 2027 to 2029"
    message = tmp_path / "long.eml"
    message.write_text(
        "From: Rita Rep <rita@acme.test>\n"
        "To: Bartholomew Longname <bartholomew.longname@subsidiary-holdings.globex.test>\n"
        f"Subject: {subject}\nMessage-ID: <long@acme.test>\n\nHi\n"
    )
    sqlite_cli("ingest", "--rcpt", account.bcc, str(message))
    [row] = [
        json.loads(line)
        for line in sqlite_cli("engagements", "list", "acme", "--json").splitlines()
    ]

    def listed(columns: str | None) -> str:
        env = {key: value for key, value in os.environ.items() if key != "COLUMNS"}
        result = subprocess.run(
            [sys.executable, "-m", "capture_server", "--database-url", sqlite_cli.database_url,
             "engagements", "list", "acme"],
            capture_output=True, text=True, timeout=60, cwd=tmp_path,
            env=env | ({"COLUMNS": columns} if columns else {}),
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return result.stdout

    piped = listed(None)
    [line] = [line for line in piped.splitlines() if row["id"] in line]
    assert subject in line and "bartholomew.longname@subsidiary-holdings.globex.test" in line
    assert row["id"] not in listed("80")  # a narrow COLUMNS is obeyed (and cuts)


def test_archive_purge_json_under_keep_forever_retention_is_json(
    sqlite_cli: Cli, tmp_path: Path
) -> None:
    """`archive purge --json` from cron must print JSON also when the retention is 0 (keep
    forever): a script parsing it failed on the sentence the terminal gets."""
    env = {
        "CAPTURE_SERVER_ARCHIVE_DIR": str(tmp_path / "archive"),
        "CAPTURE_SERVER_ARCHIVE_RETENTION_DAYS": "0",
    }
    report = json.loads(sqlite_cli("archive", "purge", "--json", env_extra=env))
    assert report == {"purged": 0, "kept": 0, "older_than_days": None}
    assert "nothing purged" in sqlite_cli("archive", "purge", env_extra=env)


def test_health_on_a_missing_sqlite_file_fails_without_creating_it(tmp_path: Path) -> None:
    """A probe run from the wrong folder (or with a typo) must not leave an empty database
    behind, which every other command then called "not initialised"."""
    typo = tmp_path / "captrue.db"
    result = subprocess.run(
        [sys.executable, "-m", "capture_server", "--database-url", f"sqlite:///{typo}",
         "health", "--json"], capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    store = json.loads(result.stdout)["checks"]["store"]
    assert not store["ok"] and f"no database file {typo}" in store["detail"]
    assert not typo.exists()
