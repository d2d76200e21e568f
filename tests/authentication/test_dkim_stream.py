"""The streamed DKIM body hash (dkim_stream.py) against dkimpy's whole-body canonicalisation,
and check_dkim's big-message path against today's path on real signatures."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import dkim
import pytest
from dkim.canonicalization import CanonicalizationPolicy

from capture_server.authentication import DnsConfig, checks
from capture_server.authentication.checks import check_dkim
from capture_server.authentication.dkim_stream import (
    AVAILABLE,
    StreamingDKIM,
    body_start,
    canonical_body_hash,
)
from capture_server.authentication.dnsclient import Resolver

from .conftest import RsaKey
from .zoneserver import ZoneServer


@pytest.fixture
def dns_config(zone: ZoneServer) -> DnsConfig:
    """The zone with a roomier time-out than the package's 0.5 s: nothing here times out on
    purpose, and each case compares two paths' results, so a look-up slowed past 0.5 s by a
    loaded machine made one path's DKIM a temperror and the case fail."""
    return DnsConfig(nameservers=("127.0.0.1",), port=zone.port, timeout=5.0)


# Another dkimpy: check dkim_stream.py against its verify_sig_process, then add the version to
# CHECKED_DKIMPY (meanwhile big messages are verified by dkimpy alone, in memory).
pytestmark = pytest.mark.skipif(
    not AVAILABLE, reason="dkim_stream.py not checked against this dkimpy"
)

SIGNED = [b"from", b"to", b"subject", b"date", b"message-id"]
CHUNK_SIZES = (1, 2, 3, 7, 64, 1 << 20)

BODIES = {
    "plain": b"Hello customer,\r\nsee you Tuesday.\r\n",
    "trailing-whitespace": b"line one  \t\r\nline two\t\r\n \r\nlast \t ",
    "whitespace-runs": b"a  b\t\tc \t d\r\n   leading\r\n\t\r\n x  \t  y\r\n",
    "long-lines": b"x" * 5000 + b" " * 300 + b"y" * 3000 + b"\r\n" + b"z \t" * 2000 + b"\r\n",
    "trailing-empty-lines": b"text\r\n\r\n\r\n \r\n\t\r\n\r\n",
    "only-empty-lines": b"\r\n\r\n\r\n",
    "only-whitespace": b"  \t ",
    "no-trailing-crlf": b"first\r\nno line end at the end",
    "empty": b"",
    "8-bit": "Grüße, 東京 \u00a0\r\n".encode() + b"\xff\r\n\xff\xfe \x80\r\n",
    "lf-only": b"one\ntwo  \nthree\t\n\n\n",
    "lone-cr": b"a\rb \r\r\n\r \r\n\r\r\n\r\n\r",
    "mixed-ends": b"a\r\n\nb \n\r\n \r\r\n\n",
    "base64": b"TWFueSBoYW5kcyBtYWtlIGxpZ2h0IHdvcmsu\r\n" * 40,
}


def message(body: bytes, *, lf: bool = False, subject: str = "Quote") -> bytes:
    head = (
        "From: Rep <rep@example.com>\r\n"
        "To: Customer <buyer@customer.test>\r\n"
        f"Subject: {subject}\r\n"
        "Date: Tue, 07 May 2024 10:00:00 +0000\r\n"
        "Message-ID: <quote-1@example.com>\r\n"
        "MIME-Version: 1.0\r\n"
        "\r\n"
    ).encode()
    if lf:
        head = head.replace(b"\r\n", b"\n")
    return head + body


def dkimpy_canonical_body(raw: bytes, c: bytes) -> bytes:
    _, body = dkim.rfc822_parse(raw)
    return bytes(CanonicalizationPolicy.from_c_value(c).canonicalize_body(body))


# ----------------------------------------------------------------- the body hash alone


@pytest.mark.parametrize("name", sorted(BODIES))
@pytest.mark.parametrize("c", [b"simple/simple", b"relaxed/relaxed"])
@pytest.mark.parametrize("lf", [False, True])
def test_streamed_body_hash_equals_dkimpys(name: str, c: bytes, lf: bool) -> None:
    raw = message(BODIES[name], lf=lf)
    canonical = dkimpy_canonical_body(raw, c)
    relaxed = c.endswith(b"relaxed")
    body = memoryview(raw)[body_start(raw) :]
    for limit in (None, 0, 1, 5, len(canonical) // 2, len(canonical), len(canonical) + 10):
        want = canonical if limit is None else canonical[:limit]
        for algorithm in (hashlib.sha256, hashlib.sha1):
            for size in CHUNK_SIZES:
                digest, length = canonical_body_hash(body, relaxed, algorithm(), limit, size)
                assert digest == algorithm(want).digest(), (name, c, limit, size)
                assert length == len(canonical), (name, c, limit, size)


def test_edge_bodies_canonicalise_as_the_rfc_says() -> None:
    def canon(body: bytes, relaxed: bool) -> int:
        return canonical_body_hash(body, relaxed, None, None, 1)[1]

    assert canon(b"", relaxed=False) == 2  # simple: an empty body is CRLF
    assert canon(b"", relaxed=True) == 0  # relaxed: empty
    assert canon(b"\r\n\r\n", relaxed=True) == 0
    assert canon(b" \r\n", relaxed=False) == 3


def test_header_section_split_matches_dkimpy() -> None:
    for raw in (
        b"From: a\r\n\r\nbody",
        b"From: a\n\nbody",
        b"From: a\r\n\nbody\r\n\r\n",
        b"From: a\n\r\nbody",
        b"\r\nbody only",
        b"\nbody only",
        b"From: a\r\nX-No-Body: 1",
        b"From: a\r\n",
        b"From: a\r\n folded\r\n\r\n\r\nbody",
    ):
        start = body_start(raw)
        headers, body = dkim.rfc822_parse(raw)
        assert dkim.rfc822_parse(raw[:start])[0] == headers, raw
        assert raw[start:].replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") == body, raw


# ----------------------------------------------------------------- check_dkim, both paths


def sign(
    raw: bytes,
    key: RsaKey,
    c: bytes,
    *,
    domain: bytes = b"example.com",
    selector: bytes = b"sel",
    length: bool = False,
) -> bytes:
    linesep = b"\n" if b"\r\n" not in raw else b"\r\n"
    sig: bytes = dkim.sign(
        raw,
        selector,
        domain,
        key.private_pem,
        include_headers=SIGNED,
        canonicalize=tuple(c.split(b"/")),
        length=length,
        linesep=linesep,
    )
    return sig + raw


def both_paths(
    raw: bytes, dns_config: DnsConfig, monkeypatch: pytest.MonkeyPatch, chunk_size: int = 7
) -> tuple[Any, Any]:
    resolver = Resolver(dns_config)
    today = check_dkim(raw, resolver)
    created: list[int] = []

    class SmallChunks(StreamingDKIM):
        def __init__(self, raw: bytes, **kwargs: Any) -> None:
            super().__init__(raw, chunk_size=chunk_size, **kwargs)
            created.append(1)

    with monkeypatch.context() as m:
        m.setattr(checks, "DKIM_STREAM_THRESHOLD", 0)
        m.setattr(checks, "StreamingDKIM", SmallChunks)
        streamed = check_dkim(raw, resolver)
    assert created, "the streaming path was not taken"
    return today, streamed


CANONS = [b"simple/simple", b"relaxed/relaxed", b"simple/relaxed", b"relaxed/simple"]


@pytest.mark.parametrize("c", CANONS)
@pytest.mark.parametrize("length", [False, True])
@pytest.mark.parametrize(
    "name", ["plain", "trailing-whitespace", "trailing-empty-lines", "empty", "8-bit", "lone-cr"]
)
def test_big_path_gives_todays_results(
    keys: ZoneServer,
    dns_config: DnsConfig,
    rsa_key: RsaKey,
    monkeypatch: pytest.MonkeyPatch,
    c: bytes,
    length: bool,
    name: str,
) -> None:
    signed = sign(message(BODIES[name]), rsa_key, c, length=length)
    today, streamed = both_paths(signed, dns_config, monkeypatch)
    assert streamed == today
    assert [r.result for r in today] == ["pass"]


def _variants(rsa_key: RsaKey, other_rsa_key: RsaKey) -> dict[str, bytes]:
    base = message(BODIES["whitespace-runs"])
    rr = sign(base, rsa_key, b"relaxed/relaxed")
    ss_l = sign(base, rsa_key, b"simple/simple", length=True)
    out = {
        "tampered-body": rr.replace(b"leading", b"LEADING"),
        "whitespace-change-relaxed": rr.replace(b"a  b", b"a \t b"),
        "whitespace-change-simple": sign(base, rsa_key, b"simple/simple").replace(
            b"a  b", b"a \t b"
        ),
        "added-empty-lines": sign(base, rsa_key, b"simple/simple") + b"\r\n\r\n",
        "tampered-signed-header": rr.replace(b"Subject: Quote", b"Subject: Invoice"),
        "appended-after-l": ss_l + b"P.S. wire the money.\r\n",
        "appended-after-l-relaxed": sign(base, rsa_key, b"relaxed/relaxed", length=True)
        + b"more\r\n",
        "two-signatures": sign(rr, other_rsa_key, b"simple/simple", domain=b"other.test"),
        "two-one-tampered": sign(
            rr, other_rsa_key, b"simple/relaxed", domain=b"other.test"
        ).replace(b"leading", b"LEADING"),
        "lf-only": sign(message(BODIES["lf-only"], lf=True), rsa_key, b"relaxed/simple"),
        "lf-only-simple": sign(message(BODIES["mixed-ends"], lf=True), rsa_key, b"simple/simple"),
        "crlf-to-lf-in-transit": rr.replace(b"\r\n", b"\n"),
        "long-lines": sign(message(BODIES["long-lines"]), rsa_key, b"simple/relaxed"),
        "no-trailing-crlf": sign(message(BODIES["no-trailing-crlf"]), rsa_key, b"relaxed/simple"),
        "only-empty-lines": sign(message(BODIES["only-empty-lines"]), rsa_key, b"relaxed/relaxed"),
        "tlsrpt-key": sign(base, rsa_key, b"relaxed/relaxed", selector=b"tls"),
        "unknown-selector": sign(base, rsa_key, b"relaxed/relaxed", selector=b"gone"),
        "bad-c": re.sub(rb"c=relaxed/relaxed", b"c=bogus/relaxed", rr, count=1),
        "empty-l": re.sub(rb"l=\d+", b"l=", ss_l, count=1),
        "bad-bh-padding": re.sub(rb"bh=[A-Za-z0-9+/=]+", b"bh=A===", rr, count=1),
        "no-body-at-all": sign(message(b""), rsa_key, b"simple/simple").rstrip(b"\r\n"),
    }
    return out


VARIANTS = [
    "tampered-body",
    "whitespace-change-relaxed",
    "whitespace-change-simple",
    "added-empty-lines",
    "tampered-signed-header",
    "appended-after-l",
    "appended-after-l-relaxed",
    "two-signatures",
    "two-one-tampered",
    "lf-only",
    "lf-only-simple",
    "crlf-to-lf-in-transit",
    "long-lines",
    "no-trailing-crlf",
    "only-empty-lines",
    "tlsrpt-key",
    "unknown-selector",
    "bad-c",
    "empty-l",
    "bad-bh-padding",
    "no-body-at-all",
]


@pytest.mark.parametrize("variant", VARIANTS)
def test_big_path_gives_todays_results_on_broken_and_odd_mail(
    keys: ZoneServer,
    dns_config: DnsConfig,
    rsa_key: RsaKey,
    other_rsa_key: RsaKey,
    monkeypatch: pytest.MonkeyPatch,
    variant: str,
) -> None:
    raw = _variants(rsa_key, other_rsa_key)[variant]
    for size in (1, 3, 1 << 20):
        today, streamed = both_paths(raw, dns_config, monkeypatch, chunk_size=size)
        assert streamed == today, (variant, size)


def test_big_path_results_are_the_expected_ones(
    keys: ZoneServer,
    dns_config: DnsConfig,
    rsa_key: RsaKey,
    other_rsa_key: RsaKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    v = _variants(rsa_key, other_rsa_key)

    def streamed(name: str) -> list[tuple[str, str]]:
        return [(r.result, r.detail) for r in both_paths(v[name], dns_config, monkeypatch)[1]]

    assert streamed("tampered-body") == [("fail", "body hash mismatch")]
    assert streamed("whitespace-change-relaxed")[0][0] == "pass"
    assert streamed("whitespace-change-simple") == [("fail", "body hash mismatch")]
    assert streamed("added-empty-lines")[0][0] == "pass"
    assert streamed("tampered-signed-header") == [("fail", "signature did not verify")]
    assert streamed("appended-after-l")[0][0] == "policy"
    assert [r for r, _ in streamed("two-signatures")] == ["pass", "pass"]
    assert [r for r, _ in streamed("two-one-tampered")] == ["fail", "fail"]
    assert streamed("crlf-to-lf-in-transit")[0][0] == "pass"
    assert streamed("tlsrpt-key")[0][0] == "fail"
    assert streamed("bad-c")[0][0] == "permerror"


@pytest.mark.parametrize(
    "raw",
    [
        b"\x00\xff\xfe garbage without headers",
        b"DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=sel; h=from; bh=; b=\r\n\r\nx",
        b"DKIM-Signature: ;;;==\r\nFrom: rep@example.com\r\n\r\nx",
        b" folded first\r\nFrom: rep@example.com\r\n\r\nx",
        b"DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=sel; h=from; bh=AA==; b=AA==\r\n"
        b"From: rep@example.com\r\n\r\n x \r\n\r\n",
    ],
)
def test_big_path_on_hostile_messages(
    keys: ZoneServer, dns_config: DnsConfig, monkeypatch: pytest.MonkeyPatch, raw: bytes
) -> None:
    resolver = Resolver(dns_config)
    today = check_dkim(raw, resolver)
    monkeypatch.setattr(checks, "DKIM_STREAM_THRESHOLD", 0)
    assert check_dkim(raw, resolver) == today
