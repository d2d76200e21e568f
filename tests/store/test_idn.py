"""Internationalised domains end to end: the daemon, the CLI and migration 0015."""

from __future__ import annotations

import json
import smtplib
from pathlib import Path

from alembic import command
from sqlalchemy import Engine, text

from capture_server.store import operations
from capture_server.store.db import alembic_config, make_engine
from capture_server.store.repositories import Store
from tests.conftest import Cli, start_daemon

MUELLER = "xn--mller-kva.test"  # müller.test
GLOEBEX = "xn--glbex-kua.test"  # glöbex.test


def _mail(sender: str, to: str, number: int) -> bytes:
    return (
        f"From: Rita <{sender}>\r\nTo: Carl <{to}>\r\nSubject: Offer {number}\r\n"
        f"Date: Tue, 03 Nov 2026 10:15:00 +0100\r\nMessage-ID: <idn-{number}@x>\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\nHello\r\n"
    ).encode()


def test_an_idn_company_logs_in_either_form(database_url: str, tmp_path: Path, cli: Cli) -> None:
    """The account was added as müller.test; one rep's client writes xn--mller-kva.test
    (most do), another's the Unicode form (SMTPUTF8): both are users, and their contact at
    glöbex.test is one contact, one company, however each message wrote it."""
    created = json.loads(
        cli("account", "add", "mu", "--name", "Müller", "--domain", "Müller.test", "--json")
    )
    cli("user", "add", "mu", f"Rita@{MUELLER}", "--name", "Rita")  # stored as rita@müller.test
    daemon = start_daemon(database_url, tmp_path)
    try:
        pairs = [(f"rita@{MUELLER}", f"carl@{GLOEBEX}"), ("rita@müller.test", "carl@glöbex.test")]
        with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=30) as client:
            for number, (sender, to) in enumerate(pairs):
                options = [] if sender.isascii() else ["SMTPUTF8"]
                refused = client.sendmail(
                    sender, [created["bcc_address"]], _mail(sender, to, number), options
                )
                assert refused == {}
    finally:
        assert daemon.stop() == 0
    rows = [json.loads(line) for line in cli("engagements", "list", "mu", "--json").splitlines()]
    assert len(rows) == 2 and {row["owner"] for row in rows} == {"rita@müller.test"}
    assert {tuple(row["contacts"]) for row in rows} == {("carl@glöbex.test",)}
    assert {tuple(row["companies"]) for row in rows} == {("glöbex.test",)}
    listed = [json.loads(line) for line in cli("contacts", "list", "mu", "--json").splitlines()]
    assert [c["addresses"] for c in listed] == [["carl@glöbex.test"]]
    # The CLI takes either form too, and stores one.
    cli("never-log", "add", "mu", f"*.{GLOEBEX}")
    patterns = cli("never-log", "list", "mu", "--json").splitlines()
    assert [json.loads(p)["pattern"] for p in patterns] == ["glöbex.test"]
    assert "erased" in cli("contact", "delete", "mu", f"CARL@{GLOEBEX}", "--permanent")


def _legacy_rows(engine: Engine, account_id: int) -> None:
    """What an older version stored: the forms the mail and the admin wrote."""
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO account_domain (account_id, domain) VALUES (:a, :d)"),
            {"a": account_id, "d": MUELLER},
        )
        connection.execute(
            text("UPDATE app_user SET email = :e WHERE account_id = :a"),
            {"a": account_id, "e": f"rita@{MUELLER}"},
        )
        connection.execute(
            text("UPDATE user_address SET address = :e WHERE account_id = :a"),
            {"a": account_id, "e": f"rita@{MUELLER}"},
        )
        connection.execute(
            text("INSERT INTO never_log (account_id, pattern, created_at) VALUES (:a, :p, :t)"),
            {"a": account_id, "p": f"eve@{GLOEBEX}", "t": "2026-11-01 00:00:00"},
        )
        for address in (f"carl@{GLOEBEX}", f"dana@{GLOEBEX}", "dana@glöbex.test"):
            connection.execute(
                text(
                    "INSERT INTO contact (account_id, primary_address, created_by, created_at,"
                    " field_sources) VALUES (:a, :p, 'capture', :t, '{}')"
                ),
                {"a": account_id, "p": address, "t": "2026-11-01 00:00:00"},
            )
        connection.execute(
            text("INSERT INTO company (account_id, domain, created_at) VALUES (:a, :d, :t)"),
            {"a": account_id, "d": GLOEBEX, "t": "2026-11-01 00:00:00"},
        )


def test_migration_0015_rewrites_stored_xn_forms_and_keeps_both_on_a_clash(
    engine: Engine,
) -> None:
    store = Store(engine)
    store.create_account("mu", "Müller", ["acme-mu.test"], "capture.localhost", "s")
    store.add_user("mu", "rita@acme-mu.test")
    account_id = store.account_id("mu")
    config = alembic_config(engine)
    command.downgrade(config, "0014_webhook_version")
    _legacy_rows(engine, account_id)
    command.upgrade(config, "head")
    with engine.connect() as connection:

        def values(sql: str) -> list[str]:
            return sorted(row[0] for row in connection.execute(text(sql), {"a": account_id}))

        where = " WHERE account_id = :a"
        assert values("SELECT domain FROM account_domain" + where) == [
            "acme-mu.test",
            "müller.test",
        ]
        assert values("SELECT email FROM app_user" + where) == ["rita@müller.test"]
        assert values("SELECT address FROM user_address" + where) == ["rita@müller.test"]
        assert values("SELECT pattern FROM never_log" + where) == ["eve@glöbex.test"]
        assert values("SELECT domain FROM company" + where) == ["glöbex.test"]
        # dana was stored in both forms: the clash leaves the old row for `contacts merge`.
        assert values("SELECT primary_address FROM contact" + where) == sorted(
            ["carl@glöbex.test", f"dana@{GLOEBEX}", "dana@glöbex.test"]
        )
    fresh = Store(make_engine(str(engine.url.render_as_string(hide_password=False))))
    try:
        snapshot = fresh.snapshot(account_id)
        assert "müller.test" in snapshot.domains and "rita@müller.test" in snapshot.addresses
        # The twin is reachable by the form it is stored in, and merges into the Unicode one.
        report = operations.merge_contacts(fresh, "mu", "dana@glöbex.test", f"dana@{GLOEBEX}")
        assert (report["kept"], report["merged"]) == ("dana@glöbex.test", f"dana@{GLOEBEX}")
    finally:
        fresh.engine.dispose()
