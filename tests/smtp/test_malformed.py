"""A corpus of malformed messages over real SMTP: each gets a clear reply (250, or a 5xx the
daemon means), never a 451 or a crash, and the next normal client is served right after."""

from __future__ import annotations

import base64
import smtplib

import pytest

from tests.conftest import Cli, RunningDaemon, make_account
from tests.smtp.test_hardening import still_serves

HEAD = b"From: Rita Rep <rita@acme.test>\r\nTo: Carl <carl@globex.test>\r\nSubject: test\r\n"
MIME = HEAD + b"MIME-Version: 1.0\r\n"
BIG = bytes(range(256)) * 3000  # ~770 kB, ~1 MB once in base64

CORPUS: list[tuple[str, bytes]] = [
    ("empty", b""),
    ("headers only", HEAD),
    ("no blank line", HEAD + b"here the body starts without a blank line\r\n"),
    ("no headers", b"just some words, no header at all\r\n"),
    ("binary garbage", bytes(range(256)) * 20),
    (
        "8-bit headers",
        b"From: R\xe9ta <rita@acme.test>\r\nTo: C\xff\xfe <carl@globex.test>\r\n"
        b"Subject: \xe4\xf6\xfc \x80\x81\r\n\r\nbody\r\n",
    ),
    ("NUL bytes", HEAD.replace(b"test", b"te\x00st") + b"\r\nbo\x00dy\x00\r\n"),
    (
        "broken base64",
        MIME + b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n"
        b"\r\n!!!not base64@@@==\r\nQUJD=RA==\r\n",
    ),
    (
        "broken quoted-printable",
        MIME + b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n=ZZ=\r\n=4\r\n=C3=\r\nend=\r\n",
    ),
    (
        "unterminated multipart",
        MIME + b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
        b"--b1\r\nContent-Type: text/plain\r\n\r\nfirst\r\n--b1\r\nContent-Type: text/html\r\n",
    ),
    (
        "boundary never appears",
        MIME + b'Content-Type: multipart/mixed; boundary="nowhere"\r\n\r\njust text, no parts\r\n',
    ),
    ("multipart without boundary", MIME + b"Content-Type: multipart/alternative\r\n\r\nhi\r\n"),
    (
        "rfc822 of garbage",
        MIME + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
        b"Content-Type: message/rfc822\r\n\r\n\xff\xfe\x00garbage\r\nno: [header\r\n--b--\r\n",
    ),
    (
        "empty rfc822",
        HEAD.replace(b"Subject: test", b"Subject: Fwd: test")
        + b"Content-Type: message/rfc822\r\n\r\n",
    ),
    (
        "rfc822 forward of garbage",
        HEAD.replace(b"Subject: test", b"Subject: Fwd: x")
        + b'Content-Type: multipart/mixed; boundary="q"\r\n\r\n--q\r\nContent-Type: message/rfc822'
        b"\r\n\r\nFrom: <<>>\r\nDate: never\r\n\r\n\x00\x01\x02\r\n--q--\r\n",
    ),
    (
        "1 MB base64 on one line",
        MIME + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
        b"\r\n" + base64.b64encode(BIG) + b"\r\n--b--\r\n",
    ),
    (
        "1 MB base64 attachment",
        MIME + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--b\r\n"
        b"Content-Type: application/pdf; name=big.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(BIG).replace(b"\n", b"\r\n")
        + b"--b--\r\n",
    ),
    (
        "two From headers",
        b"From: rita@acme.test\r\nFrom: mallory@evil.test\r\n" + HEAD[31:] + b"\r\nhi\r\n",
    ),
    (
        "duplicate Message-ID, Subject, Date",
        HEAD + b"Subject: again\r\nMessage-ID: <a@x>\r\n"
        b"Message-ID: <b@y>\r\nDate: Tue, 03 Nov 2026 10:15:00 +0100\r\n"
        b"Date: yesterday\r\n\r\nhi\r\n",
    ),
    (
        "folded a thousand times",
        HEAD + b"X-Long: start" + b"\r\n folded" * 1000 + b"\r\n\r\nhi\r\n",
    ),
    (
        "bogus encoded words",
        b"From: =?x-bogus?B?AAAA?= <rita@acme.test>\r\nTo: carl@globex.test"
        b"\r\nSubject: =?utf-8?Q?=FF=FE?= =?utf-7?B?+AGQ-?= =??=\r\n\r\nhi\r\n",
    ),
    (
        "bogus charset",
        MIME + b"Content-Type: text/plain; charset=\"utf-8''\\x00\"\r\n\r\n\xe9t\xe9\r\n",
    ),
    (
        "garbage Content-Type",
        MIME + b'Content-Type: ;;;==="\r\nContent-Disposition: ;;=\r\n\r\nhi\r\n',
    ),
    (
        "garbage Date and Message-ID",
        HEAD + b"Date: 99 Foo 99999 99:99:99 +9999\r\n"
        b"Message-ID: <<<>>>@@\r\nIn-Reply-To: <\r\nReferences: >>> <<<\r\n\r\nhi\r\n",
    ),
    (
        "garbage address lists",
        b'From: rita@acme.test\r\nTo: undisclosed:;,,,,<>@@,,"\r\n'
        b"Cc: (((( \r\nReply-To: @\r\n\r\nhi\r\n",
    ),
    ("header lines without colon", HEAD + b"this is no header\r\n\xff\xff\r\n\r\nhi\r\n"),
    ("CR-only line endings", HEAD.replace(b"\r\n", b"\r") + b"\rbody\rmore\r"),
    ("LF-only line endings", HEAD.replace(b"\r\n", b"\n") + b"\nbody\nmore\n"),
    (
        "hostile HTML only",
        MIME
        + b"Content-Type: text/html; charset=utf-8\r\n\r\n"
        + b"<table><tr><td>" * 2000
        + b"<script>x</script>&#0;&#x110000;&bogus;<!--"
        + b"<" * 5000,
    ),
    (
        "multipart nested 300 deep",
        MIME
        + b"".join(
            f'Content-Type: multipart/mixed; boundary="d{n}"\r\n\r\n--d{n}\r\n'.encode()
            for n in range(300)
        ),
    ),
    ("rfc822 nested 200 deep", HEAD + b"Content-Type: message/rfc822\r\n\r\n" * 200 + b"x\r\n"),
    (
        "uuencode junk",
        MIME + b"Content-Type: text/plain\r\nContent-Transfer-Encoding: x-uuencode"
        b"\r\n\r\nbegin 644 x\r\n\xff\xff\r\nend\r\n",
    ),
    ("utf-16 odd bytes", MIME + b"Content-Type: text/plain; charset=utf-16\r\n\r\n\xff\xfeA\x00B"),
    (
        "header section over the limit",
        HEAD
        + b"X-Pad: "
        + b"a" * 900
        + b"\r\n"
        + (b"X-Pad: " + b"b" * 900 + b"\r\n") * 150
        + b"\r\nhi\r\n",
    ),
]


def send(daemon: RunningDaemon, bcc: str, raw: bytes) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=30) as client:
        client.ehlo("mta.test")
        client.mail("rita@acme.test")
        assert client.rcpt(bcc)[0] == 250
        return client.data(raw)


@pytest.mark.timeout(120)
def test_malformed_corpus_gets_clear_replies(daemon: RunningDaemon, cli: Cli) -> None:
    account = make_account(cli)
    answers = {}
    for number, (name, raw) in enumerate(CORPUS):
        code, text = send(daemon, account.bcc, raw)
        answers[name] = (code, text[:60])
        assert code == 250 or 500 <= code < 600, (name, code, text)
        assert b"held for review" not in text, (name, text)  # the pipeline did not crash
        still_serves(daemon, account.bcc, f"after-malformed-{number}")
    # The ones that have a meaning of their own say it.
    assert answers["1 MB base64 on one line"][0] == 500  # 500 5.5.2 Line too long
    assert answers["header section over the limit"][0] == 552
    assert answers["1 MB base64 attachment"][0] == 250
    log = daemon.log()
    for sign in ("capture_failed", "message_held", "smtp_session_error", "Traceback"):
        assert sign not in log, (sign, log[-3000:])
