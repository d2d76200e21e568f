"""Attacks on the daemon; after each, the next normal client is served and nothing is lost."""

from __future__ import annotations

import datetime as dt
import json
import signal
import smtplib
import socket
import ssl
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import Cli, RunningDaemon, make_account, read_data, start_daemon


def replies_of(sock: socket.socket, reader: object, command: bytes) -> bytes:
    sock.sendall(command + b"\r\n")
    line: bytes = reader.readline()  # type: ignore[attr-defined]
    while line[3:4] == b"-":
        line = reader.readline()  # type: ignore[attr-defined]
    return line


def open_session(port: int, source: str = "127.0.0.1") -> tuple[socket.socket, object]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(source, 0))
    reader = sock.makefile("rb")
    assert reader.readline().startswith(b"220")
    return sock, reader


def send_behind_balancer(port: int, header: bytes, rcpt: str, marker: str) -> None:
    """A load balancer at 127.0.0.2 sends a PROXY header, then a message that is logged."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30,
                                    source_address=("127.0.0.2", 0))  # fmt: skip
    with sock:
        reader = sock.makefile("rb")
        sock.sendall(header)
        assert reader.readline().startswith(b"220")
        for command in (b"HELO lb.test", b"MAIL FROM:<rita@acme.test>",
                        f"RCPT TO:<{rcpt}>".encode(), b"DATA"):  # fmt: skip
            assert replies_of(sock, reader, command)[:1] in (b"2", b"3")
        raw = read_data("bcc_simple.eml").replace(b"<proposal-q3-1@", f"<{marker}@".encode())
        sock.sendall(raw.replace(b"\n", b"\r\n") + b".\r\n")
        assert reader.readline().startswith(b"250 2.0.0 queued")


def still_serves(daemon: RunningDaemon, account_bcc: str, marker: str) -> None:
    """A normal client right after an attack: its message is logged."""
    raw = read_data("bcc_simple.eml").replace(b"<proposal-q3-1@", f"<{marker}@".encode())
    with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=30) as client:
        client.ehlo("normal.test")
        client.mail("rita@acme.test")
        assert client.rcpt(account_bcc)[0] == 250
        code, text = client.data(raw)
    assert code == 250, text


def engagement_ids(cli: Cli, slug: str) -> list[str]:
    rows = cli("engagements", "list", slug, "--json").splitlines()
    return [json.loads(row)["message_id"] for row in rows]


SMUGGLING = [b"\n.\n", b"\r.\r", b"\r.\n", b"\n.\r\n", b"\r\n.\n", b"\r\n.\r", b"\r\n\x00.\r\n"]


def test_smtp_smuggling_never_makes_a_second_message(daemon: RunningDaemon, cli: Cli) -> None:
    account = make_account(cli)
    for number, ending in enumerate(SMUGGLING):
        sock, reader = open_session(daemon.smtp_port)
        with sock:
            for command in (b"EHLO attacker.test", b"MAIL FROM:<rita@acme.test>",
                            f"RCPT TO:<{account.bcc}>".encode(), b"DATA"):  # fmt: skip
                assert replies_of(sock, reader, command)[:1] in (b"2", b"3")
            first = (
                read_data("bcc_simple.eml")
                .replace(b"<proposal-q3-1@", f"<smuggle-{number}@".encode())
                .replace(b"\n", b"\r\n")
            )
            smuggled = (
                b"MAIL FROM:<rita@acme.test>\r\nRCPT TO:<" + account.bcc.encode() + b">\r\n"
                b"DATA\r\nFrom: rita@acme.test\r\nTo: victim@globex.test\r\n"
                b"Message-ID: <smuggled-" + str(number).encode() + b"@evil.test>\r\n\r\nhi\r\n"
            )
            sock.sendall(first + ending + smuggled + b"\r\n.\r\n")
            assert reader.readline().startswith(b"250 2.0.0")  # type: ignore[attr-defined]
            sock.sendall(b"QUIT\r\n")
            rest = reader.read()  # type: ignore[attr-defined]
            assert rest.startswith(b"221") and rest.count(b"\r\n") == 1, rest
    ids = engagement_ids(cli, account.slug)
    assert sorted(ids) == sorted(f"<smuggle-{n}@mail.acme.test>" for n in range(len(SMUGGLING)))
    still_serves(daemon, account.bcc, "after-smuggling")


def test_recipient_flood_and_long_command_line(daemon: RunningDaemon, cli: Cli) -> None:
    account = make_account(cli)
    sock, reader = open_session(daemon.smtp_port)
    with sock:
        replies_of(sock, reader, b"EHLO flood.test")
        replies_of(sock, reader, b"MAIL FROM:<rita@acme.test>")
        command = f"RCPT TO:<{account.bcc}>\r\n".encode()
        sock.sendall(command * 1001)
        answers = [reader.readline() for _ in range(1001)]  # type: ignore[attr-defined]
        assert all(a.startswith(b"250 2.1.5") for a in answers[:1000])
        assert answers[1000].startswith(b"452 4.5.3")
        assert replies_of(sock, reader, b"NOOP " + b"x" * 5000).startswith(b"500")
        assert replies_of(sock, reader, b"DATA").startswith(b"354")
        sock.sendall(read_data("bcc_simple.eml").replace(b"\n", b"\r\n") + b".\r\n")
        assert reader.readline().startswith(b"250 2.0.0 queued as")  # type: ignore[attr-defined]
    assert len(engagement_ids(cli, account.slug)) == 1  # one capture, not a thousand
    still_serves(daemon, account.bcc, "after-flood")


def test_huge_header_section_and_deep_mime(daemon: RunningDaemon, cli: Cli) -> None:
    account = make_account(cli)
    headers = b"".join(b"X-Junk-%d: some value here\r\n" % i for i in range(50_000))
    with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=60) as client:
        client.ehlo("junk.test")
        client.mail("rita@acme.test")
        client.rcpt(account.bcc)
        code, text = client.data(headers + read_data("bcc_simple.eml"))
        assert (code, text[:5]) == (552, b"5.3.4")
    deep = b"From: rita@acme.test\r\nTo: carl@globex.test\r\nSubject: deep\r\n"
    deep += b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
        for i in range(2000)
    )
    deep += b"Content-Type: text/plain\r\n\r\nhello\r\n"
    started = time.monotonic()
    with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=60) as client:
        client.ehlo("deep.test")
        client.mail("rita@acme.test")
        client.rcpt(account.bcc)
        code, text = client.data(deep)
    assert code == 250 and b"not logged: unparseable" in text
    assert time.monotonic() - started < 10
    still_serves(daemon, account.bcc, "after-junk")


def test_regex_trap_bodies_stay_fast(daemon: RunningDaemon, cli: Cli) -> None:
    account = make_account(cli)
    traps = [
        b"From: a@b\n" * 100_000,
        b"-----Original Message-----\n" * 20_000,
        b"> " * 2000 + b"From: x@y.test\n",
        b"x" * 900 + b"\n" + (b"a" * 990 + b"\n") * 1000,
    ]
    for number, body in enumerate(traps):
        raw = (
            b"From: Rita <rita@acme.test>\r\nTo: fwd@capture.localhost\r\nSubject: Fwd: trap\r\n"
            b"Message-ID: <trap-%d@acme.test>\r\n\r\n" % number
        ) + body.replace(b"\n", b"\r\n")
        started = time.monotonic()
        with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=60) as client:
            client.ehlo("trap.test")
            client.mail("rita@acme.test")
            client.rcpt(account.forward)
            code, _ = client.data(raw)
        assert code == 250
        assert time.monotonic() - started < 10, number
    still_serves(daemon, account.bcc, "after-traps")


def test_connection_limits(database_url: str, tmp_path: Path, cli: Cli) -> None:
    account = make_account(cli)
    daemon = start_daemon(database_url, tmp_path, max_connections_per_ip="400",
                          max_connections="420")  # fmt: skip
    idle: list[socket.socket] = []
    try:
        for _ in range(400):
            idle.append(socket.create_connection(("127.0.0.1", daemon.smtp_port), timeout=30))
        for sock in idle[-5:]:
            assert sock.makefile("rb").readline().startswith(b"220")
        # The 401st from this address is refused politely, as is the world past the total.
        refused = socket.create_connection(("127.0.0.1", daemon.smtp_port), timeout=30)
        assert refused.makefile("rb").readline().startswith(b"421 4.7.0")
        refused.close()
        for sock in idle[:100]:
            sock.close()
        time.sleep(0.5)
        still_serves(daemon, account.bcc, "after-idle")
    finally:
        for sock in idle:
            sock.close()
        assert daemon.stop() == 0


def test_slow_loris_and_error_limits(database_url: str, tmp_path: Path, cli: Cli) -> None:
    account = make_account(cli)
    daemon = start_daemon(database_url, tmp_path, smtp_timeout_seconds="2",
                          hard_error_limit="5", junk_command_limit="10")  # fmt: skip
    try:
        # A command dribbled one byte a second never completes: the session is cut.
        sock, reader = open_session(daemon.smtp_port)
        started = time.monotonic()
        with sock:
            with pytest.raises(OSError):  # noqa: PT012 (the write fails once the server hung up)
                for byte in b"MAIL FROM:<rita@acme.test>":
                    sock.sendall(bytes([byte]))
                    time.sleep(1)
                    if not reader.peek(1):  # type: ignore[attr-defined]
                        raise ConnectionResetError
            assert time.monotonic() - started < 10
        # DATA dribbled slowly is bounded by the same timeout.
        sock, reader = open_session(daemon.smtp_port)
        with sock:
            for command in (b"HELO slow.test", b"MAIL FROM:<rita@acme.test>",
                            f"RCPT TO:<{account.bcc}>".encode(), b"DATA"):  # fmt: skip
                replies_of(sock, reader, command)
            started = time.monotonic()
            closed = False
            for _ in range(20):
                try:
                    sock.sendall(b"a line of text\r\n")
                except OSError:
                    closed = True
                    break
                time.sleep(0.5)
                if sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
                    closed = True
                    break
            assert closed and time.monotonic() - started < 8
        # Errors and junk commands: 421, then the connection closes.
        sock, reader = open_session(daemon.smtp_port)
        with sock:
            for _ in range(4):  # RCPT before MAIL: 503, an error each time
                assert replies_of(sock, reader, b"RCPT TO:<a@b.test>").startswith(b"503")
            sock.sendall(b"RCPT TO:<a@b.test>\r\n")
            assert reader.readline().startswith(b"503")  # type: ignore[attr-defined]
            assert reader.readline().startswith(b"421 4.7.0")  # type: ignore[attr-defined]
            assert reader.readline() == b""  # type: ignore[attr-defined]
        sock, reader = open_session(daemon.smtp_port)
        with sock:
            answers = [replies_of(sock, reader, b"NOOP") for _ in range(11)]
            assert answers[-1].startswith(b"421 4.7.0")
        still_serves(daemon, account.bcc, "after-slow")
    finally:
        assert daemon.stop() == 0


def _certificate(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "capture.localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("capture.localhost")]), False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_starttls_required_tls_and_implicit_tls(
    database_url: str, tmp_path: Path, cli: Cli
) -> None:
    account = make_account(cli)
    cert, key = _certificate(tmp_path)
    daemon = start_daemon(database_url, tmp_path, tls_cert_file=str(cert), tls_key_file=str(key),
                          require_tls="true", smtps_listen="127.0.0.1:0")  # fmt: skip
    context = ssl.create_default_context(cafile=str(cert))
    context.check_hostname = False
    try:
        with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=30) as client:
            client.ehlo("tls.test")
            assert client.has_extn("starttls")
            code, _ = client.mail("rita@acme.test")
            assert code == 530  # TLS is required first
            client.rset()
            client.starttls(context=context)
            client.ehlo("tls.test")
            client.mail("rita@acme.test")
            client.rcpt(account.bcc)
            assert client.data(read_data("bcc_simple.eml"))[0] == 250
        raw = read_data("bcc_role_addresses.eml")
        with smtplib.SMTP_SSL(
            "127.0.0.1", daemon.ports["smtps"], timeout=30, context=context
        ) as client:
            client.ehlo("tls.test")
            assert not client.has_extn("starttls")
            client.mail("rita@acme.test")
            client.rcpt(account.bcc)
            assert client.data(raw)[0] == 250
    finally:
        assert daemon.stop() == 0
    assert len(engagement_ids(cli, account.slug)) == 2


def test_proxy_protocol_only_from_the_load_balancer(
    database_url: str, tmp_path: Path, cli: Cli
) -> None:
    account = make_account(cli)
    daemon = start_daemon(database_url, tmp_path, proxy_protocol_from='["127.0.0.2/32"]')
    try:
        # The load balancer (127.0.0.2) speaks PROXY v1, then v2, first; the real client is
        # logged. v2: signature, version 2 / PROXY, TCP over IPv4, 12 address bytes.
        v2 = (
            b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c"
            + socket.inet_aton("198.51.100.9") + socket.inet_aton("127.0.0.1")
            + (40001).to_bytes(2, "big") + (25).to_bytes(2, "big")
        )  # fmt: skip
        headers = [b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 25\r\n", v2]
        for number, header in enumerate(headers):
            send_behind_balancer(daemon.smtp_port, header, account.bcc, f"proxied-{number}")
        # Anyone else is served directly, and a PROXY line from them is just a bad command.
        sock, reader = open_session(daemon.smtp_port)
        with sock:
            assert replies_of(sock, reader, b"PROXY TCP4 198.51.100.1 1.2.3.4 1 2")[:1] == b"5"
        still_serves(daemon, account.bcc, "after-proxy")
    finally:
        assert daemon.stop() == 0
    captured = [
        json.loads(line) for line in daemon.log().splitlines() if "message_captured" in line
    ]
    assert [event["client_ip"] for event in captured] == [
        "203.0.113.7", "198.51.100.9", "127.0.0.1"
    ]  # fmt: skip


def test_sigkill_under_load_loses_nothing_acknowledged(
    database_url: str, tmp_path: Path, cli: Cli
) -> None:
    account = make_account(cli)
    daemon = start_daemon(database_url, tmp_path)
    template = read_data("bcc_simple.eml")
    acknowledged: list[int] = []
    stop = threading.Event()

    def sender(worker: int) -> None:
        for n in range(40):
            if stop.is_set():
                return
            number = worker * 1000 + n
            raw = template.replace(b"<proposal-q3-1@", f"<load-{number}@".encode())
            try:
                with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=10) as client:
                    client.sendmail("rita@acme.test", [account.bcc], raw)
                acknowledged.append(number)
            except (OSError, smtplib.SMTPException):
                return

    threads = [threading.Thread(target=sender, args=(w,)) for w in range(6)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while len(acknowledged) < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    daemon.process.send_signal(signal.SIGKILL)
    daemon.process.wait(10)
    stop.set()
    for thread in threads:
        thread.join(30)
    assert len(acknowledged) >= 20
    stored = set(engagement_ids(cli, account.slug))
    missing = [n for n in acknowledged if f"<load-{n}@mail.acme.test>" not in stored]
    assert missing == []
    # Resend everything after a restart: each message ends up stored exactly once.
    restarted = start_daemon(database_url, tmp_path)
    try:
        with smtplib.SMTP("127.0.0.1", restarted.smtp_port, timeout=30) as client:
            for worker in range(6):
                for n in range(40):
                    number = worker * 1000 + n
                    raw = template.replace(b"<proposal-q3-1@", f"<load-{number}@".encode())
                    client.sendmail("rita@acme.test", [account.bcc], raw)
    finally:
        assert restarted.stop() == 0
    ids = engagement_ids(cli, account.slug)
    assert len(ids) == len(set(ids)) == 240


def test_nul_bytes_and_raw_8bit_headers_are_stored(daemon: RunningDaemon, cli: Cli) -> None:
    account = make_account(cli)
    raw = (
        "From: Rïta Rep <rita@acme.test>\r\nTo: Zoë Kunde <zoe@globex.test>\r\n"
        "Subject: Angebot für Zoë \x00 heute\r\nMessage-ID: <nul-8bit@acme.test>\r\n"
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        "Grüße\x00 und bis bald\r\n"
    ).encode()
    sock, reader = open_session(daemon.smtp_port)
    with sock:
        for command in (b"EHLO raw.test", b"MAIL FROM:<rita@acme.test>",
                        f"RCPT TO:<{account.bcc}>".encode(), b"DATA"):  # fmt: skip
            assert replies_of(sock, reader, command)[:1] in (b"2", b"3")
        sock.sendall(raw + b".\r\n")
        assert reader.readline().startswith(b"250 2.0.0 queued as")  # type: ignore[attr-defined]
    [row] = cli("engagements", "list", account.slug, "--json").splitlines()
    engagement = json.loads(row)
    assert engagement["subject"] == "Angebot für Zoë  heute"
    assert engagement["body_text"] == "Grüße und bis bald"
    assert engagement["to"] == [{"address": "zoe@globex.test", "name": "Zoë Kunde"}]
