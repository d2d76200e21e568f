"""Sender authentication wired into the product: the daemon over real SMTP, pointed at the
loopback zone server, on SQLite and PostgreSQL.

The daemon listens on loopback, so every message comes from 127.0.0.1, which acme.test's
SPF record does not authorise: a genuine rep's mail passes by its DKIM signature alone,
and anything unsigned (or signed by someone else) carries no proof that it is from
acme.test.
"""

from __future__ import annotations

import json
import smtplib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import dkim
import pytest

from tests.conftest import Cli, RunningDaemon, make_account, start_daemon

from .conftest import RsaKey
from .zoneserver import ZoneServer

SIGNED_HEADERS = [b"from", b"to", b"subject", b"date", b"message-id"]
FORGED_AR = (
    "Authentication-Results: mx.trusted.test; spf=pass smtp.mailfrom=rita@acme.test;\r\n"
    " dkim=pass header.d=acme.test; dmarc=pass header.from=acme.test\r\n"
)


def message(
    key: str,
    from_: str = "Rita Rep <rita@acme.test>",
    extra_headers: str = "",
    body: str = "Hello Carl,\r\nthe quote is attached.\r\n",
) -> bytes:
    return (
        f"{extra_headers}From: {from_}\r\n"
        "To: Carl Customer <carl@globex.test>\r\n"
        f"Subject: Quote {key}\r\n"
        "Date: Tue, 03 Nov 2026 09:15:00 +0000\r\n"
        f"Message-ID: <{key}@acme.test>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        f"{body}"
    ).encode()


def sign(raw: bytes, domain: str, key: RsaKey, *, length: bool = False) -> bytes:
    signature: bytes = dkim.sign(
        raw, b"sel", domain.encode(), key.private_pem, include_headers=SIGNED_HEADERS,
        length=length,
    )  # fmt: skip
    return signature + raw


@dataclass(frozen=True)
class Case:
    name: str
    raw: bytes
    mail_from: str
    enforce_reply: tuple[int, bytes]  # (code, enhanced status) in enforce
    enforce_reason: str
    report_method: tuple[str, str]  # a (method, result) the recorded results must hold


def cases(rsa_key: RsaKey, other_key: RsaKey) -> list[Case]:
    genuine = sign(message("genuine"), "acme.test", rsa_key)
    replayed = sign(message("replayed"), "acme.test", rsa_key)
    l_signed = sign(message("l-tag"), "acme.test", rsa_key, length=True)
    refused = (550, b"5.7.26")
    return [
        Case("genuine", genuine, "rita@acme.test", (250, b"2.0.0"), "logged", ("dkim", "pass")),
        Case(
            "forged From, no signature",
            message("unsigned"), "rita@acme.test", refused, "auth_failed", ("spf", "fail"),
        ),
        Case(
            # evil.test proves it is evil.test; the display name proves nothing, and MAIL
            # FROM (which any client writes) may not name a rep of another organisation.
            "display-name spoof",
            sign(message("display", from_='"rita@acme.test" <mallory@evil.test>'),
                 "evil.test", other_key),
            "rita@acme.test", (550, b"5.7.1"), "sender_not_user", ("dkim", "pass"),
        ),
        Case(
            "DKIM d= another domain",
            sign(message("other-d"), "other.test", other_key),
            "bounce@other.test", refused, "auth_failed", ("dkim", "pass"),
        ),
        Case(
            "two From headers",
            sign(message("two-from", extra_headers="From: Sam <sam@acme.test>\r\n"),
                 "acme.test", rsa_key),
            "rita@acme.test", refused, "auth_failed", ("dmarc", "permerror"),
        ),
        Case(
            "prepended From over a valid signature",
            b"From: Sam Colleague <sam@acme.test>\r\n" + replayed,
            "sam@acme.test", refused, "auth_failed", ("dkim", "fail"),
        ),
        Case(
            "l= signature with appended content",
            l_signed + b"\r\nP.S. wire the money to account 1234.\r\n",
            "rita@acme.test", refused, "auth_failed", ("dkim", "policy"),
        ),
        Case(
            "forged Authentication-Results from an untrusted client",
            message("forged-ar", extra_headers=FORGED_AR),
            "rita@acme.test", refused, "auth_failed", ("spf", "fail"),
        ),
    ]  # fmt: skip


@pytest.fixture
def world(zone: ZoneServer, rsa_key: RsaKey, other_rsa_key: RsaKey) -> ZoneServer:
    zone.txt("acme.test", "v=spf1 ip4:192.0.2.0/24 -all")  # loopback is not authorised
    zone.txt("sel._domainkey.acme.test", rsa_key.dns_record)
    zone.txt("_dmarc.acme.test", "v=DMARC1; p=reject")
    zone.txt("sel._domainkey.evil.test", other_rsa_key.dns_record)
    zone.txt("sel._domainkey.other.test", other_rsa_key.dns_record)
    zone.txt("other.test", "v=spf1 -all")
    return zone


def dns_settings(zone: ZoneServer) -> dict[str, str]:
    return {
        "dns_nameservers": '["127.0.0.1"]',
        "dns_port": str(zone.port),
        "dns_timeout": "0.3",
        # These tests change the zone mid-run (an outage, new keys): a cache would rightly
        # keep the old answers for their TTL (see tests/authentication/test_dns_cache.py).
        "dns_cache_seconds": "0",
        "authserv_id": "capture.test",
        # The forged header names a trusted authserv-id, but loopback is no trusted relay.
        "trusted_relays": '["10.9.9.9"]',
        "trusted_authserv_ids": '["mx.trusted.test"]',
    }


@pytest.fixture
def auth_daemon(database_url: str, tmp_path: Path, world: ZoneServer) -> Iterator[RunningDaemon]:
    running = start_daemon(database_url, tmp_path, **dns_settings(world))
    try:
        yield running
    finally:
        running.stop()


def auth_cli(cli: Cli, zone: ZoneServer) -> Cli:
    env = {f"CAPTURE_SERVER_{k.upper()}": v for k, v in dns_settings(zone).items()}
    return replace(cli, env={**cli.env, **env})


def send(daemon: RunningDaemon, raw: bytes, rcpt: str, mail_from: str) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=30) as client:
        client.ehlo("client.test")
        code, text = client.mail(mail_from)
        assert code == 250, text
        code, text = client.rcpt(rcpt)
        assert code == 250, text
        try:
            return client.data(raw)
        except smtplib.SMTPDataError as error:
            return error.smtp_code, error.smtp_error


def lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines()]


def accounts_in_both_modes(cli: Cli) -> tuple[str, str]:
    """Two accounts with the same rep domain: 'enf' enforces, 'rep' only reports."""
    enforce = make_account(cli, "enf", "acme.test")
    report = make_account(cli, "rep", "acme.test")
    cli("account", "settings", "set", "enf", "auth_mode", "enforce")
    assert "auth_mode" in cli("account", "settings", "show", "rep")
    return enforce.bcc, report.bcc


def test_every_forgery_is_refused_in_enforce_and_recorded_in_report(
    auth_daemon: RunningDaemon,
    cli: Cli,
    world: ZoneServer,
    rsa_key: RsaKey,
    other_rsa_key: RsaKey,
    tmp_path: Path,
) -> None:
    enforce_bcc, report_bcc = accounts_in_both_modes(cli)
    all_cases = cases(rsa_key, other_rsa_key)
    for case in all_cases:
        code, text = send(auth_daemon, case.raw, enforce_bcc, case.mail_from)
        assert (code, text[:6].strip()) == case.enforce_reply, (case.name, code, text)
        code, text = send(auth_daemon, case.raw, report_bcc, case.mail_from)
        assert (code, text[:9]) == (250, b"2.0.0 que"), (case.name, code, text)

    # The resolver stops answering for acme.test: enforce defers, report still logs.
    world.timeout("acme.test")
    late = message("dns-timeout")
    code, text = send(auth_daemon, late, enforce_bcc, "rita@acme.test")
    assert (code, text[:5]) == (451, b"4.4.3"), text
    code, text = send(auth_daemon, late, report_bcc, "rita@acme.test")
    assert code == 250, text

    # Enforce: only the genuine message was logged, as Rita; every refusal is an event.
    [logged] = lines(cli("engagements", "list", "enf", "--json"))
    assert (logged["subject"], logged["owner"]) == ("Quote genuine", "rita@acme.test")
    events = lines(cli("events", "enf", "--json"))
    expected = [case.enforce_reason for case in all_cases] + ["auth_temperror"]
    assert Counter(e["reason"] for e in events) == Counter(expected)
    [deferred] = [e for e in events if e["reason"] == "auth_temperror"]
    assert deferred["decision"] == "defer"
    assert deferred["smtp_reply"].startswith("451 4.4.3")
    auth = deferred["authentication"]
    assert (auth["mode"], auth["outcome"]) == ("enforce", "tempfail")
    assert auth["results"]["temporary_error"] is True
    assert {m["method"]: m["result"] for m in auth["results"]["methods"]}["spf"] == "temperror"
    refused = [e for e in events if e["reason"] == "auth_failed"]
    assert refused and all(e["smtp_reply"].startswith("550 5.7.26") for e in refused)
    assert all(e["authentication"]["outcome"] == "fail" for e in refused)
    [spoof] = [e for e in events if e["reason"] == "sender_not_user"]
    assert spoof["authentication"]["results"]["from_address"] == "mallory@evil.test"
    assert "attribute" in [entry["stage"] for entry in spoof["trace"]]

    # Report: every message was logged, and each event holds the results enforce used.
    report_events = lines(cli("events", "rep", "--json"))
    assert len(report_events) == len(all_cases) + 1
    assert all(e["decision"] == "log" for e in report_events)
    recorded = {e["subject"]: e["authentication"] for e in report_events}
    for case in all_cases:
        subject = case.raw.split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0].decode()
        auth = recorded[subject]
        assert auth["mode"] == "report" and auth["outcome"] == "pass", case.name
        results = auth["results"]
        assert results["authserv_id"] == "capture.test"
        assert results["source"] == "local", case.name  # the forged header was ignored
        methods = {(m["method"], m["result"]) for m in results["methods"]}
        assert case.report_method in methods, (case.name, methods)
        if case.name == "genuine":
            assert results["from_address"] == "rita@acme.test"
            assert auth["detail"] == "authenticated acme.test"
        elif case.name == "display-name spoof":  # aligned, but for evil.test
            assert results["from_address"] == "mallory@evil.test"
            assert auth["detail"] == "authenticated evil.test"
        else:
            assert results["aligned"] is False, case.name
            assert auth["detail"].startswith("report only; would fail"), case.name
    assert [p["code"] for p in recorded["Quote two-from"]["structure"]] == ["multiple_from"]
    assert recorded["Quote dns-timeout"]["results"]["temporary_error"] is True

    # dry-run --json gathers the same evidence (DNS answers again), and writes nothing.
    world.timeout_names.discard("acme.test")
    files = []
    for case in all_cases:
        path = tmp_path / f"{len(files)}.eml"
        path.write_bytes(case.raw)
        files.append(str(path))
    dry = auth_cli(cli, world)
    before = len(lines(cli("events", "enf", "--json")))
    out = dry("dry-run", "--rcpt", enforce_bcc, "--client-ip", "127.0.0.1", "--json", *files)
    decisions = lines(out)
    assert len(decisions) == len(all_cases)
    for case, decision in zip(all_cases, decisions, strict=True):
        assert set(decision) >= {"file", "decision", "reason", "smtp_reply", "engagement", "trace"}
        assert decision["reason"] == case.enforce_reason, case.name
        assert decision["smtp_reply"][:3] == str(case.enforce_reply[0]), case.name
        assert decision["authentication"]["mode"] == "enforce"
    assert decisions[0]["authentication"]["results"]["aligned"] is True
    assert len(lines(cli("events", "enf", "--json"))) == before


def test_trusted_relay_results_are_used_only_from_the_trusted_relay(
    database_url: str, tmp_path: Path, cli: Cli, world: ZoneServer
) -> None:
    account = make_account(cli, "enf", "acme.test")
    cli("account", "settings", "set", "enf", "auth_mode", "enforce")
    settings = {**dns_settings(world), "trusted_relays": '["127.0.0.0/8"]'}
    daemon = start_daemon(database_url, tmp_path, **settings)
    try:
        relayed = message("relayed", extra_headers=FORGED_AR)
        code, text = send(daemon, relayed, account.bcc, "rita@acme.test")
        assert (code, text[:9]) == (250, b"2.0.0 que"), text
        # The same message without the relay's verdict has no proof at all.
        code, text = send(daemon, message("bare"), account.bcc, "rita@acme.test")
        assert (code, text[:6]) == (550, b"5.7.26"), text
    finally:
        daemon.stop()
    logged = [e for e in lines(cli("events", "enf", "--json")) if e["decision"] == "log"]
    [event] = logged
    results = event["authentication"]["results"]
    assert (results["source"], results["authserv_id"]) == ("trusted_upstream", "mx.trusted.test")
    assert results["aligned"] is True


def test_a_capture_address_logs_only_into_its_own_account(daemon: RunningDaemon, cli: Cli) -> None:
    acme = make_account(cli, "acme", "acme.test")
    globex = make_account(cli, "globex", "globex.test")
    headers_naming_b = (
        f"Delivered-To: {globex.bcc}\r\nX-Original-To: {globex.forward}\r\n"
        f"Cc: {globex.bcc}, {globex.reply}\r\n"
    )
    # Rcpt A, every header naming B: logged into A only.
    raw = message("to-a", extra_headers=headers_naming_b).replace(
        b"To: Carl Customer <carl@globex.test>", f"To: {globex.bcc}, carl@customer.test".encode()
    )
    code, text = send(daemon, raw, acme.bcc, "rita@acme.test")
    assert (code, text[:9]) == (250, b"2.0.0 que"), text
    # A rep of B (From and MAIL FROM) writing to A's address is no user of A: refused,
    # and nothing reaches B.
    from_b = message("from-b", from_="Rita <rita@globex.test>", extra_headers=headers_naming_b)
    code, text = send(daemon, from_b, acme.bcc, "rita@globex.test")
    assert (code, text[:5]) == (550, b"5.7.1"), text
    [engagement] = lines(cli("engagements", "list", "acme", "--json"))
    assert engagement["owner"] == "rita@acme.test"
    assert engagement["subject"] == "Quote to-a"
    assert lines(cli("engagements", "list", "globex", "--json")) == []
    assert lines(cli("events", "globex", "--json")) == []
    assert [e["reason"] for e in lines(cli("events", "acme", "--json"))] == [
        "sender_not_user",
        "logged",
    ]


def test_auth_check_command(sqlite_cli: Cli, world: ZoneServer) -> None:
    world.add("acme.test", "MX", "10 mx.acme.test.")
    cli = auth_cli(sqlite_cli, world)
    report = json.loads(cli("auth", "check", "ACME.test", "--json"))
    assert report["domain"] == "acme.test"
    assert report["ready"] is True
    assert report["dmarc"]["policy"] == "reject"
    assert report["spf"]["record"] == "v=spf1 ip4:192.0.2.0/24 -all"
    human = cli("auth", "check", "acme.test")
    assert "acme.test: ready for auth_mode enforce" in human
    # other.test publishes SPF but no DMARC record: it cannot pass enforce.
    unready = json.loads(cli("auth", "check", "other.test", "--json", expect=1))
    assert unready["ready"] is False
    assert any(p.startswith("DMARC") for p in unready["problems"])


def test_bad_authentication_settings_are_refused(sqlite_cli: Cli) -> None:
    bad = replace(sqlite_cli, env={**sqlite_cli.env, "CAPTURE_SERVER_TRUSTED_RELAYS": '["x"]'})
    bad("auth", "check", "acme.test", expect=2)
    cli = sqlite_cli
    make_account(cli, "acme", "acme.test")
    cli("account", "settings", "set", "acme", "auth_mode", "sometimes", expect=1)
    assert json.loads(cli("account", "settings", "show", "acme", "--json"))["auth_mode"] == "report"
