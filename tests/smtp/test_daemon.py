"""The daemon over real SMTP and LMTP on loopback, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from capture_server import heap
from tests.conftest import (
    DATA,
    Cli,
    RunningDaemon,
    make_account,
    read_data,
    sigterm_during_delivery,
    start_daemon,
)


def send(daemon: RunningDaemon, raw: bytes, rcpts: list[str], mail_from: str) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=30) as client:
        client.ehlo("client.test")
        code, text = client.mail(mail_from)
        assert code == 250, text
        for rcpt in rcpts:
            code, text = client.rcpt(rcpt)
            assert code == 250, (rcpt, text)
        return client.data(raw)


def engagements(cli: Cli, slug: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in cli("engagements", "list", slug, "--json").splitlines()]


def test_bcc_message_becomes_an_engagement(daemon: RunningDaemon, cli: Cli) -> None:
    account = make_account(cli)
    code, text = send(daemon, read_data("bcc_simple.eml"), [account.bcc], "rita@acme.test")
    assert code == 250
    assert text.startswith(b"2.0.0 queued as eng_")
    [engagement] = engagements(cli, account.slug)
    assert text.decode().endswith(f"queued as {engagement['id']}")
    assert engagement["kind"] == "bcc"
    assert engagement["direction"] == "outgoing"
    assert engagement["owner"] == "rita@acme.test"
    assert engagement["subject"] == "Proposal for the Q3 rollout"
    assert engagement["message_id"] == "<proposal-q3-1@mail.acme.test>"
    assert engagement["occurred_at"] == "2026-11-03T09:15:00+00:00"
    assert engagement["from"] == {"address": "rita@acme.test", "name": "Rita Rep"}
    assert engagement["to"] == [{"address": "carl@globex.test", "name": "Carl Customer"}]
    assert engagement["contacts"] == [
        "carl@globex.test",
        "dana@globex.test",
        "frank.free@gmail.com",
    ]
    assert engagement["companies"] == ["globex.test"]  # gmail.com is free mail: no company
    assert "proposal for the Q3 rollout" in str(engagement["body_text"])
    contacts = [json.loads(line) for line in cli("contacts", "list", "acme", "--json").splitlines()]
    assert {c["addresses"][0]: c["company"] for c in contacts} == {
        "carl@globex.test": "globex.test",
        "dana@globex.test": "globex.test",
        "frank.free@gmail.com": None,
    }
    assert all(c["created_by"] == "capture" for c in contacts)


def test_retry_and_second_address_give_one_engagement(daemon: RunningDaemon, cli: Cli) -> None:
    account = make_account(cli)
    raw = read_data("bcc_simple.eml")
    first = send(daemon, raw, [account.bcc], "rita@acme.test")
    again = send(daemon, raw, [account.bcc, account.reply], "rita@acme.test")
    assert first[0] == again[0] == 250
    [engagement] = engagements(cli, account.slug)
    assert again[1].decode().endswith(f"Already logged as {engagement['id']}")
    assert len(cli("contacts", "list", "acme", "--json").splitlines()) == 3


def test_unknown_and_foreign_recipients_are_refused(daemon: RunningDaemon, cli: Cli) -> None:
    account = make_account(cli)
    guessed = account.bcc.replace(account.bcc.split("-")[-1].split("@")[0], "a" * 16)
    with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=30) as client:
        client.ehlo("client.test")
        client.mail("rita@acme.test")
        code, text = client.rcpt(guessed)
        assert (code, text[:5]) == (550, b"5.1.1")
        code, text = client.rcpt("someone@example.com")
        assert (code, text[:5]) == (550, b"5.7.1")
        assert b"relaying denied" in text
        code, _ = client.rcpt(account.bcc.upper())  # addresses are case-insensitive
        assert code == 250


def test_a_tagged_capture_address_is_the_address(daemon: RunningDaemon, cli: Cli) -> None:
    """`+tag` (RFC 5233; Postfix's recipient_delimiter passes it on) files, never bounces;
    the same address named with and without a tag is still one capture."""
    account = make_account(cli)
    local, _, domain = account.bcc.partition("@")
    tagged = f"{local}+Deal-42@{domain}"
    raw = read_data("bcc_simple.eml")
    with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=30) as client:
        client.ehlo("client.test")
        client.mail("rita@acme.test")
        assert client.rcpt(tagged)[0] == 250
        assert client.rcpt(account.bcc)[0] == 250
        code, text = client.data(raw)
    assert code == 250 and text.startswith(b"2.0.0 queued as eng_"), text
    [engagement] = engagements(cli, account.slug)
    assert engagement["kind"] == "bcc"
    other = "y" if local.endswith("x") else "x"  # one token character changed
    guessed = f"{local[:-1]}{other}+Deal-42@{domain}"  # a tag opens no other address
    with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=30) as client:
        client.ehlo("client.test")
        client.mail("rita@acme.test")
        assert client.rcpt(guessed)[0] == 550
    decided = json.loads(cli("dry-run", "--rcpt", tagged, str(DATA / "bcc_simple.eml"), "--json"))
    assert decided["decision"] == "log"


def test_sender_who_is_no_user_is_rejected(daemon: RunningDaemon, cli: Cli) -> None:
    account = make_account(cli)
    code, text = send(
        daemon, read_data("bcc_unknown_sender.eml"), [account.bcc], "mallory@evil.test"
    )
    assert (code, text[:5]) == (550, b"5.7.1")
    assert engagements(cli, account.slug) == []
    [event] = [json.loads(line) for line in cli("events", "acme", "--json").splitlines()]
    assert (event["decision"], event["reason"]) == ("reject", "sender_not_user")
    stages = [entry["stage"] for entry in event["trace"]]
    assert stages == ["parse", "authenticate", "thread", "attribute"]


def test_ignored_message_is_accepted_and_recorded(daemon: RunningDaemon, cli: Cli) -> None:
    account = make_account(cli)
    code, text = send(daemon, read_data("bcc_internal.eml"), [account.bcc], "rita@acme.test")
    assert code == 250
    assert b"not logged: internal_only" in text
    assert engagements(cli, account.slug) == []


def test_size_limit_announced_and_not(database_url: str, tmp_path: Path, cli: Cli) -> None:
    account = make_account(cli)
    daemon = start_daemon(database_url, tmp_path, max_message_bytes="2000")
    try:
        with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=30) as client:
            client.ehlo("client.test")
            assert client.has_extn("size") and client.esmtp_features["size"] == "2000"
            code, text = client.mail("rita@acme.test", ["SIZE=5000"])
            assert (code, text[:5]) == (552, b"5.3.4")
        big = read_data("bcc_simple.eml") + (b"x" * 70 + b"\r\n") * 50
        with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=30) as client:
            client.ehlo_or_helo_if_needed()
            client.esmtp_features.pop("size")  # do not announce: the limit still holds at DATA
            client.mail("rita@acme.test")
            client.rcpt(account.bcc)
            code, text = client.data(big)
            assert (code, text[:5]) == (552, b"5.3.4")
    finally:
        assert daemon.stop() == 0
    assert engagements(cli, account.slug) == []


def lmtp_exchange(port: int, lines: list[bytes], data: bytes, replies_expected: int) -> list[bytes]:
    """Raw LMTP: send commands one by one, then DATA, then read one reply per recipient."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"220")
        sock.sendall(b"LHLO client.test\r\n")
        while not (line := reader.readline()).startswith(b"250 "):
            assert line.startswith(b"250-"), line
        answers = []
        for command in lines:
            sock.sendall(command + b"\r\n")
            answers.append(reader.readline())
        sock.sendall(b"DATA\r\n")
        assert reader.readline().startswith(b"354")
        sock.sendall(data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") + b".\r\n")
        answers += [reader.readline() for _ in range(replies_expected)]
        sock.sendall(b"QUIT\r\n")
        assert reader.readline().startswith(b"221")
        return answers


def test_lmtp_answers_each_recipient(daemon: RunningDaemon, cli: Cli) -> None:
    acme = make_account(cli)
    other = make_account(cli, "initech", "initech.test")
    raw = read_data("bcc_simple.eml")
    answers = lmtp_exchange(
        daemon.lmtp_port,
        [
            b"MAIL FROM:<rita@acme.test>",
            f"RCPT TO:<{acme.bcc}>".encode(),
            b"RCPT TO:<nobody@capture.localhost>",
            f"RCPT TO:<{other.bcc}>".encode(),
            f"RCPT TO:<{acme.reply}>".encode(),
        ],
        raw,
        replies_expected=3,
    )
    assert answers[0].startswith(b"250")
    assert answers[1].startswith(b"250") and answers[2].startswith(b"550 5.1.1")
    assert answers[3].startswith(b"250") and answers[4].startswith(b"250")
    acme_reply, other_reply, acme_again = answers[5:]
    assert acme_reply.startswith(b"250 2.0.0 queued as eng_")
    # Rita is not a user of initech: that recipient alone is refused.
    assert other_reply.startswith(b"550 5.7.1")
    assert acme_again.startswith(b"250 2.0.0 Already logged as")
    assert len(engagements(cli, acme.slug)) == 1
    assert engagements(cli, other.slug) == []


def test_concurrent_deliveries_never_duplicate(daemon: RunningDaemon, cli: Cli) -> None:
    account = make_account(cli)
    raw = read_data("bcc_simple.eml")
    results: list[int] = []

    def deliver() -> None:
        results.append(send(daemon, raw, [account.bcc], "rita@acme.test")[0])

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results == [250] * 8
    assert len(engagements(cli, account.slug)) == 1
    assert len(cli("contacts", "list", "acme", "--json").splitlines()) == 3


def test_no_exception_text_reaches_the_client(daemon: RunningDaemon, cli: Cli) -> None:
    make_account(cli)
    with socket.create_connection(("127.0.0.1", daemon.smtp_port), timeout=30) as sock:
        reader = sock.makefile("rb")
        reader.readline()
        for command in (b"EHLO x", b"MAIL FROM:<a@b.test> SIZE=abc", b"RCPT TO:<\x00@x>",
                        b"DATA", b"BDAT 10", b"NOOP"):  # fmt: skip
            sock.sendall(command + b"\r\n")
            line = reader.readline()
            while line[3:4] == b"-":
                line = reader.readline()
            assert b"Error: (" not in line and b"Traceback" not in line, line
        assert line.startswith(b"250")  # still serving


def test_sigterm_finishes_the_transaction_in_flight(
    database_url: str, tmp_path: Path, cli: Cli
) -> None:
    account = make_account(cli)
    daemon = start_daemon(database_url, tmp_path)
    sigterm_during_delivery(daemon, account.bcc)
    assert daemon.process.wait(timeout=30) == 0
    assert len(engagements(cli, account.slug)) == 1


def test_a_daemon_without_mail_listeners_warns(tmp_path: Path) -> None:
    """`serve --smtp '' --lmtp ''` is allowed (a node for webhooks or the API) but warned of."""
    log_path = tmp_path / "daemon.log"
    env = {**os.environ, "CAPTURE_SERVER_DATABASE_URL": f"sqlite:///{tmp_path / 'd.db'}",
           "CAPTURE_SERVER_QUARANTINE_DIR": str(tmp_path / "q"),
           "CAPTURE_SERVER_LOG_FORMAT": "json"}  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "capture_server", "serve", "--smtp", "", "--lmtp", ""],
        env=env, stdout=log_path.open("wb"), stderr=subprocess.STDOUT, cwd=tmp_path,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while '"heap_settled"' not in log_path.read_text() and time.monotonic() < deadline:
            assert process.poll() is None, log_path.read_text()
            time.sleep(0.05)
        events = [json.loads(line) for line in log_path.read_text().splitlines()
                  if line.startswith("{")]  # fmt: skip
        [warning] = [e for e in events if e.get("event") == "no_mail_listener"]
        assert warning["level"] == "warning" and "receives no mail" in warning["detail"]
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0


def test_the_public_suffix_list_is_read_before_listening(daemon: RunningDaemon) -> None:
    """Read at start (and said which list), not by the first message's DMARC check."""
    names = [json.loads(line).get("event") for line in daemon.log().splitlines()
             if line.startswith("{")]  # fmt: skip
    assert "public_suffix_list" in names and "listening" in names
    assert names.index("public_suffix_list") < names.index("listening")
    [read] = daemon.events("public_suffix_list")
    assert read["source"]  # a file's path, or "builtin"


def test_the_start_up_heap_is_frozen_out_of_the_collector(daemon: RunningDaemon, cli: Cli) -> None:
    """capture_server/heap.py: full collections no longer rescan what start-up built."""
    deadline = time.monotonic() + 20  # logged just after the listeners
    while not daemon.events("heap_settled") and time.monotonic() < deadline:
        time.sleep(0.05)
    [settled] = daemon.events("heap_settled")
    assert settled["frozen_objects"] > 50_000  # SQLAlchemy, email, pydantic: ~135,000
    assert settled["thresholds"][0] == heap.YOUNG_THRESHOLD
    account = make_account(cli)
    code, _ = send(daemon, read_data("bcc_simple.eml"), [account.bcc], "rita@acme.test")
    assert code == 250
