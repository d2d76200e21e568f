"""The streamed ARC-Message-Signature body hash (dkim_stream.StreamingARC) against dkimpy's
own ARC verification, on the same messages: dkimpy's (cv, results, reason), the errors it
logs, and check_arc's answers must be the same on both paths."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import re
from collections.abc import Callable
from typing import Any

import dkim
import pytest
from dkim.canonicalization import CanonicalizationPolicy

from capture_server.authentication import DnsConfig, checks, verify_message
from capture_server.authentication.checks import check_arc
from capture_server.authentication.dkim_stream import AVAILABLE, StreamingARC
from capture_server.authentication.dnsclient import Resolver

from .conftest import RsaKey
from .test_dkim_stream import BODIES, CHUNK_SIZES, SIGNED, message
from .zoneserver import ZoneServer

pytestmark = pytest.mark.skipif(
    not AVAILABLE, reason="dkim_stream.py not checked against this dkimpy"
)

SRV_1 = "mx.example.com"
SRV_2 = "mx.other.test"


class _Signer(dkim.ARC):  # type: ignore[misc]
    """dkimpy's ARC sealer; the ARC-Message-Signature's c= and l= are the test's.

    dkimpy always signs relaxed/relaxed without l=; a verifier honours whatever c= and l=
    the AMS carries, so the tests seal other ones too (bh= recomputed by dkimpy's code).
    """

    def __init__(self, raw: bytes, c: bytes, length: int | bool | None) -> None:
        super().__init__(raw, linesep=b"\r\n" if b"\r\n" in raw else b"\n")
        self.ams_c = c
        self.ams_length = length

    def gen_header(
        self,
        fields: list[tuple[bytes, bytes]],
        include_headers: Any,
        canon_policy: Any,
        header_name: bytes,
        pk: Any,
        standardize: bool = False,
    ) -> Any:
        if header_name == b"ARC-Message-Signature":
            canon_policy = CanonicalizationPolicy.from_c_value(self.ams_c)
            body = canon_policy.canonicalize_body(self.body)
            out: list[tuple[bytes, bytes]] = []
            for name, value in fields:
                if name == b"c":
                    value = self.ams_c
                if name == b"bh" and self.ams_length is not None:
                    n = len(body) if self.ams_length is True else int(self.ams_length)
                    out.append((b"l", str(n).encode()))
                    body = body[:n]
                if name == b"bh":
                    value = base64.b64encode(hashlib.sha256(body).digest())
                out.append((name, value))
            fields = out
        return super().gen_header(
            fields, include_headers, canon_policy, header_name, pk, standardize
        )


def seal(
    raw: bytes,
    key: RsaKey,
    *,
    domain: bytes = b"example.com",
    selector: bytes = b"sel",
    srv_id: str = SRV_1,
    results: str = "dkim=pass header.d=example.com",
    c: bytes = b"relaxed/relaxed",
    length: int | bool | None = None,
) -> bytes:
    """``raw`` with an Authentication-Results from ``srv_id`` and the ARC set it adds."""
    linesep = b"\r\n" if b"\r\n" in raw else b"\n"
    raw = f"Authentication-Results: {srv_id}; {results}".encode() + linesep + raw
    arc_set = _Signer(raw, c, length).sign(
        selector, domain, key.private_pem, srv_id.encode(), include_headers=SIGNED
    )
    assert arc_set, "dkimpy did not seal"
    return b"".join(arc_set) + raw


def second_hop(raw: bytes, key: RsaKey, cv: str = "pass", **kwargs: Any) -> bytes:
    return seal(raw, key, domain=b"other.test", srv_id=SRV_2, results=f"arc={cv}", **kwargs)


# ----------------------------------------------------------------- dkimpy against StreamingARC


@pytest.fixture
def dnsfunc(rsa_key: RsaKey, other_rsa_key: RsaKey) -> Callable[..., bytes | None]:
    records = {
        b"sel._domainkey.example.com.": rsa_key.dns_record,
        b"sel._domainkey.other.test.": other_rsa_key.dns_record,
        b"tls._domainkey.example.com.": rsa_key.dns_record.replace("k=rsa;", "k=rsa; s=tlsrpt;"),
    }

    def lookup(name: bytes, timeout: float = 5) -> bytes | None:
        record = records.get(name.lower())
        return record.encode() if record is not None else None

    return lookup


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _run(make: Callable[[], Any], dnsfunc: Callable[..., Any]) -> tuple[Any, list[str]]:
    """(what verify returned or raised, the errors dkimpy logged on the way)."""
    errors = _Errors()
    logger = logging.getLogger("dkimpy")
    logger.addHandler(errors)
    try:
        outcome: Any = ("returned", make().verify(dnsfunc=dnsfunc))
    except Exception as exc:
        outcome = ("raised", type(exc), str(exc))
    finally:
        logger.removeHandler(errors)
    return outcome, errors.messages


def compare(
    raw: bytes, dnsfunc: Callable[..., Any], chunk_sizes: tuple[int, ...] = CHUNK_SIZES
) -> Any:
    """dkimpy's answer on ``raw``, asserted equal to StreamingARC's at every chunk size."""
    want = _run(lambda: dkim.ARC(raw, minkey=1024), dnsfunc)
    for size in chunk_sizes:

        def make(size: int = size) -> StreamingARC:
            arc = StreamingARC(raw, minkey=1024, chunk_size=size)
            assert not arc.body, "StreamingARC parsed the body"
            return arc

        mp = pytest.MonkeyPatch()
        mp.setattr(CanonicalizationPolicy, "canonicalize_body", _refuse)
        try:
            got = _run(make, dnsfunc)
        finally:
            mp.undo()
        assert got == want, size
    return want[0]


def _refuse(self: Any, body: bytes) -> bytes:
    raise AssertionError("dkimpy canonicalised the whole body")


def cv_of(outcome: Any) -> Any:
    assert outcome[0] == "returned", outcome
    return outcome[1][0]


@pytest.mark.parametrize("name", sorted(BODIES))
@pytest.mark.parametrize("lf", [False, True])
def test_valid_chain_same_as_dkimpy(
    rsa_key: RsaKey, dnsfunc: Callable[..., Any], name: str, lf: bool
) -> None:
    raw = seal(message(BODIES[name], lf=lf), rsa_key)
    assert cv_of(compare(raw, dnsfunc)) == dkim.CV_Pass


@pytest.mark.parametrize(
    "c", [b"relaxed/relaxed", b"simple/simple", b"simple/relaxed", b"relaxed/simple"]
)
@pytest.mark.parametrize("length", [None, True])
@pytest.mark.parametrize(
    "name", ["plain", "trailing-whitespace", "trailing-empty-lines", "empty", "lone-cr"]
)
def test_canonicalisations_and_body_length_same_as_dkimpy(
    rsa_key: RsaKey, dnsfunc: Callable[..., Any], c: bytes, length: bool | None, name: str
) -> None:
    raw = seal(message(BODIES[name]), rsa_key, c=c, length=length)
    assert cv_of(compare(raw, dnsfunc)) == dkim.CV_Pass


def _variants(rsa_key: RsaKey, other_rsa_key: RsaKey) -> dict[str, bytes]:
    base = message(BODIES["whitespace-runs"])
    one = seal(base, rsa_key)
    simple = seal(base, rsa_key, c=b"simple/simple")
    with_l = seal(base, rsa_key, length=True)
    two = second_hop(one, other_rsa_key)

    def sub(pattern: bytes, replacement: bytes, raw: bytes) -> bytes:
        out, n = re.subn(pattern, replacement, raw, count=1)
        assert n == 1, pattern
        return out

    return {
        "tampered-body": one.replace(b"leading", b"LEADING"),
        "whitespace-change-relaxed": one.replace(b"a  b", b"a \t b"),
        "whitespace-change-simple": simple.replace(b"a  b", b"a \t b"),
        "added-empty-lines": one + b"\r\n\r\n",
        "added-empty-lines-simple": simple + b"\r\n\r\n",
        "appended-text": one + b"P.S. wire the money.\r\n",
        "tampered-signed-header": one.replace(b"Subject: Quote", b"Subject: Invoice"),
        "tampered-aar": one.replace(b"header.d=example.com", b"header.d=evil.test", 1),
        "crlf-to-lf-in-transit": one.replace(b"\r\n", b"\n"),
        "l-appended-after": with_l + b"P.S. wire the money.\r\n",
        "l-appended-after-simple": seal(base, rsa_key, c=b"simple/simple", length=True)
        + b"more\r\n",
        "l-shorter-than-body": seal(base, rsa_key, length=10),
        "l-zero": seal(base, rsa_key, c=b"simple/simple", length=0),
        "l-longer-than-body": seal(base, rsa_key, length=10_000),
        "l-shorter-tampered-after": seal(base, rsa_key, length=10).replace(b"leading", b"LEAD"),
        "l-shorter-tampered-inside": seal(base, rsa_key, length=10).replace(b"a  b", b"A b"),
        "l-empty": sub(rb"l=\d+", b"l=", with_l),
        "two-sets": two,
        "three-sets": seal(two, rsa_key, srv_id="mx3.example.com", results="arc=pass"),
        "two-sets-body-tampered-after-hop-1": second_hop(
            one.replace(b"leading", b"LEADING"), other_rsa_key
        ),
        "two-sets-body-tampered-after-hop-2": two.replace(b"leading", b"LEADING"),
        "two-sets-mixed-canon": second_hop(simple, other_rsa_key, c=b"simple/relaxed"),
        "two-sets-second-reports-fail": second_hop(one, other_rsa_key, cv="fail"),
        "two-sets-tampered-first-seal": second_hop(
            sub(rb"(ARC-Seal: i=1; )", rb"\1foo=bar; ", one), other_rsa_key
        ),
        "lf-only": seal(message(BODIES["lf-only"], lf=True), rsa_key, c=b"relaxed/simple"),
        "lf-only-simple": seal(message(BODIES["mixed-ends"], lf=True), rsa_key, c=b"simple/simple"),
        "long-lines": seal(message(BODIES["long-lines"]), rsa_key, c=b"simple/relaxed"),
        "no-trailing-crlf": seal(message(BODIES["no-trailing-crlf"]), rsa_key),
        "only-empty-lines": seal(message(BODIES["only-empty-lines"]), rsa_key),
        "no-body-at-all": seal(message(b""), rsa_key, c=b"simple/simple").rstrip(b"\r\n"),
        "tlsrpt-key": seal(base, rsa_key, selector=b"tls"),
        "unknown-selector": seal(base, rsa_key, selector=b"gone"),
        "bad-c": sub(rb"c=relaxed/relaxed", b"c=bogus/relaxed", one),
        "bad-bh-padding": sub(rb"bh=[A-Za-z0-9+/=]+", b"bh=A===", one),
        "bh-not-base64": sub(rb"bh=[A-Za-z0-9+/=]+", b"bh=!!!!", one),
        "unknown-a": sub(
            rb"a=rsa-sha256; d=example.com; s=sel; t", b"a=rsa-sha1; d=example.com; s=sel; t", one
        ),
        "ams-signs-arc-seal": sub(rb"h=from", b"h=arc-seal : from", one),
        "duplicate-ams": sub(rb"(ARC-Message-Signature: [^\n]*\n)", rb"\1\1", one),
        "no-ams": sub(rb"ARC-Message-Signature: ", b"X-Removed: ", one),
    }


VARIANTS = sorted(
    {
        "tampered-body", "whitespace-change-relaxed", "whitespace-change-simple",
        "added-empty-lines", "added-empty-lines-simple", "appended-text",
        "tampered-signed-header", "tampered-aar", "crlf-to-lf-in-transit", "l-appended-after",
        "l-appended-after-simple", "l-shorter-than-body", "l-zero", "l-longer-than-body",
        "l-shorter-tampered-after", "l-shorter-tampered-inside", "l-empty", "two-sets",
        "three-sets", "two-sets-body-tampered-after-hop-1", "two-sets-body-tampered-after-hop-2",
        "two-sets-mixed-canon", "two-sets-second-reports-fail", "two-sets-tampered-first-seal",
        "lf-only", "lf-only-simple", "long-lines", "no-trailing-crlf", "only-empty-lines",
        "no-body-at-all", "tlsrpt-key", "unknown-selector", "bad-c", "bad-bh-padding",
        "bh-not-base64", "unknown-a", "ams-signs-arc-seal", "duplicate-ams", "no-ams",
    }
)  # fmt: skip


@pytest.fixture(scope="module")
def variants(rsa_key: RsaKey, other_rsa_key: RsaKey) -> dict[str, bytes]:
    return _variants(rsa_key, other_rsa_key)


def test_every_variant_is_listed(variants: dict[str, bytes]) -> None:
    assert sorted(variants) == VARIANTS


@pytest.mark.parametrize("variant", VARIANTS)
def test_broken_and_odd_chains_same_as_dkimpy(
    variants: dict[str, bytes], dnsfunc: Callable[..., Any], variant: str
) -> None:
    compare(variants[variant], dnsfunc)


def test_variants_give_the_expected_dkimpy_answers(
    variants: dict[str, bytes], dnsfunc: Callable[..., Any]
) -> None:
    """The variants test what they say (dkimpy's answer, which StreamingARC then matches)."""

    def answer(name: str) -> tuple[Any, list[bool], str]:
        outcome = compare(variants[name], dnsfunc, chunk_sizes=(3,))
        assert outcome[0] == "returned", (name, outcome)
        cv, results, reason = outcome[1]
        return cv, [bool(r.get("ams-valid")) for r in results], reason

    ams_failed = (dkim.CV_Fail, [False], "Most recent ARC-Message-Signature did not validate")
    assert answer("tampered-body") == ams_failed
    assert answer("whitespace-change-relaxed")[0] == dkim.CV_Pass
    assert answer("whitespace-change-simple") == ams_failed
    assert answer("added-empty-lines")[0] == dkim.CV_Pass
    assert answer("added-empty-lines-simple")[0] == dkim.CV_Pass
    assert answer("appended-text") == ams_failed
    assert answer("tampered-signed-header") == ams_failed
    assert answer("tampered-aar")[2] == "ARC-Seal[1] did not validate"
    assert answer("crlf-to-lf-in-transit")[0] == dkim.CV_Pass
    for name in ("l-appended-after", "l-appended-after-simple", "l-shorter-than-body", "l-zero"):
        assert answer(name)[0] == dkim.CV_Pass, name
    assert answer("l-longer-than-body")[0] == dkim.CV_Pass
    assert answer("l-shorter-tampered-after")[0] == dkim.CV_Pass
    assert answer("l-shorter-tampered-inside") == ams_failed
    assert answer("two-sets") == (dkim.CV_Pass, [True, True], "success")
    assert answer("three-sets") == (dkim.CV_Pass, [True, True, True], "success")
    assert answer("two-sets-body-tampered-after-hop-1") == (dkim.CV_Pass, [True, False], "success")
    assert answer("two-sets-body-tampered-after-hop-2")[:2] == (dkim.CV_Fail, [False, False])
    assert answer("two-sets-mixed-canon")[0] == dkim.CV_Pass
    assert answer("two-sets-second-reports-fail")[0] is None
    assert answer("two-sets-tampered-first-seal")[2] == "ARC-Seal[1] did not validate"
    for name in ("lf-only", "lf-only-simple", "long-lines", "no-trailing-crlf"):
        assert answer(name)[0] == dkim.CV_Pass, name
    assert answer("only-empty-lines")[0] == dkim.CV_Pass
    assert answer("no-body-at-all")[0] == dkim.CV_Pass
    for name in ("tlsrpt-key", "unknown-selector", "bad-c"):
        assert answer(name) == ams_failed, name
    assert answer("duplicate-ams")[0] == dkim.CV_Fail


def test_what_dkimpy_raises_is_raised(
    variants: dict[str, bytes], dnsfunc: Callable[..., Any]
) -> None:
    assert compare(variants["l-empty"], dnsfunc)[:2] == ("raised", ValueError)
    assert compare(variants["bad-bh-padding"], dnsfunc)[:2] == ("raised", binascii.Error)


# ----------------------------------------------------------------- check_arc, both paths


def check_arc_both_paths(
    raw: bytes, dns_config: DnsConfig, monkeypatch: pytest.MonkeyPatch, chunk_size: int
) -> tuple[Any, Any]:
    resolver = Resolver(dns_config)
    with monkeypatch.context() as m:
        m.setattr(checks, "STREAMING_AVAILABLE", False)
        m.setattr(checks, "ARC_STREAM_THRESHOLD", 0)
        today = check_arc(raw, resolver)
    created: list[int] = []

    class SmallChunks(StreamingARC):
        def __init__(self, raw: bytes, **kwargs: Any) -> None:
            created.append(1)
            super().__init__(raw, chunk_size=chunk_size, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(checks, "ARC_STREAM_THRESHOLD", 0)
        m.setattr(checks, "StreamingARC", SmallChunks)
        m.setattr(CanonicalizationPolicy, "canonicalize_body", _refuse)
        streamed = check_arc(raw, resolver)
    assert created, "the streaming path was not taken"
    return today, streamed


@pytest.mark.parametrize("variant", VARIANTS)
def test_check_arc_big_path_gives_todays_results(
    keys: ZoneServer,
    dns_config: DnsConfig,
    variants: dict[str, bytes],
    monkeypatch: pytest.MonkeyPatch,
    variant: str,
) -> None:
    for size in (1, 7, 1 << 20):
        today, streamed = check_arc_both_paths(variants[variant], dns_config, monkeypatch, size)
        assert streamed == today, (variant, size)


def test_check_arc_results_on_the_big_path(
    keys: ZoneServer,
    dns_config: DnsConfig,
    variants: dict[str, bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def streamed(name: str) -> tuple[str, str]:
        r = check_arc_both_paths(variants[name], dns_config, monkeypatch, 5)[1]
        return r.result, r.detail

    assert streamed("two-sets") == ("pass", "chain of 2 verified; sealed by other.test")
    assert streamed("tampered-body") == (
        "fail",
        "Most recent ARC-Message-Signature did not validate",
    )
    assert streamed("l-appended-after")[0] == "pass"
    assert streamed("two-sets-second-reports-fail")[0] == "fail"


def test_big_message_takes_the_streaming_path_by_default(
    keys: ZoneServer,
    dns_config: DnsConfig,
    rsa_key: RsaKey,
    other_rsa_key: RsaKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    body = b"JVBERi0xLjQKJcfsj6IKNSAwIG9iago8PC9MZW5ndGggNiAwIFIvRmlsdGVyIC9GbGF0ZURlY29kZT4+\r\n"
    raw = second_hop(seal(message(body * 30_000), rsa_key), other_rsa_key)
    assert len(raw) > checks.ARC_STREAM_THRESHOLD
    resolver = Resolver(dns_config)
    created: list[int] = []

    class Counting(StreamingARC):
        def __init__(self, raw: bytes, **kwargs: Any) -> None:
            super().__init__(raw, **kwargs)
            created.append(1)

    monkeypatch.setattr(checks, "StreamingARC", Counting)
    result = check_arc(raw, resolver)
    assert created
    assert (result.result, result.detail) == ("pass", "chain of 2 verified; sealed by other.test")
    monkeypatch.setattr(checks, "STREAMING_AVAILABLE", False)  # another dkimpy: dkimpy's path
    created.clear()
    assert check_arc(raw, resolver) == result
    assert not created
    tampered = raw.replace(b"JVBERi0x", b"JVBERi0X", 1)
    monkeypatch.setattr(checks, "STREAMING_AVAILABLE", True)
    failed = check_arc(tampered, resolver)
    assert created
    monkeypatch.setattr(checks, "STREAMING_AVAILABLE", False)
    assert check_arc(tampered, resolver) == failed
    assert failed.result == "fail"


def test_verify_message_same_on_both_paths(
    keys: ZoneServer,
    dns_config: DnsConfig,
    rsa_key: RsaKey,
    other_rsa_key: RsaKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The daemon's whole verification (DKIM and ARC streamed at once, in threads)."""
    body = message(BODIES["whitespace-runs"] * 50)
    signature = dkim.sign(body, b"sel", b"example.com", rsa_key.private_pem, include_headers=SIGNED)
    raw = second_hop(seal(signature + body, rsa_key), other_rsa_key)

    def verify() -> Any:
        return asyncio.run(
            verify_message(
                raw,
                mail_from="rep@example.com",
                helo="mail.example.com",
                client_ip="192.0.2.10",
                authserv_id="capture.test",
                dns=dns_config,
            )
        )

    with monkeypatch.context() as m:
        m.setattr(checks, "STREAMING_AVAILABLE", False)
        today = verify()
    with monkeypatch.context() as m:
        m.setattr(checks, "DKIM_STREAM_THRESHOLD", 0)
        m.setattr(checks, "ARC_STREAM_THRESHOLD", 0)
        m.setattr(CanonicalizationPolicy, "canonicalize_body", _refuse)
        streamed = verify()
    assert streamed == today
    assert {m.method: m.result for m in today.methods}["arc"] == "pass"
    assert {m.method: m.result for m in today.methods}["dkim"] == "pass"
