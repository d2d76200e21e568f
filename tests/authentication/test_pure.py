"""Pure parts: structure, decide, DMARC parsing/alignment, PSL, A-R header round-trip."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from capture_server.authentication import (
    AuthenticationResults,
    MethodResult,
    StructuralProblem,
    check_structure,
    decide,
    domains_aligned,
    organizational_domain,
    parse_authentication_results,
    parse_dmarc_record,
    parse_from,
    strip_untrusted_authentication_results,
)
from capture_server.authentication.dmarc import DmarcLookup, evaluate_dmarc
from capture_server.authentication.psl import PublicSuffixList

HEADERS = (
    b"From: Rep <rep@example.com>\r\nTo: a@customer.test\r\nSubject: hi\r\n"
    b"Date: Tue, 07 May 2024 10:00:00 +0000\r\nMessage-ID: <1@example.com>\r\n"
)


def results(aligned: bool, temporary: bool = False, source: str = "local") -> AuthenticationResults:
    return AuthenticationResults(
        authserv_id="capture.test",
        methods=(MethodResult("spf", "pass" if aligned else "fail", "example.com", "x"),),
        from_domain="example.com",
        dmarc_policy="reject",
        aligned=aligned,
        temporary_error=temporary,
        source=source,
        from_address="rep@example.com",
    )


# ----------------------------------------------------------------- structure


def test_clean_message_has_no_problems() -> None:
    assert check_structure(HEADERS + b"\r\nbody\r\n") == ()


@pytest.mark.parametrize(
    "name", [b"Sender", b"Reply-To", b"To", b"Cc", b"Subject", b"Date", b"Message-ID"]
)
def test_duplicate_singleton_headers(name: bytes) -> None:
    raw = HEADERS + name + b": <x@y.test>\r\n" + name + b": <z@y.test>\r\n\r\nbody"
    codes = [p.code for p in check_structure(raw)]
    assert "duplicate_header" in codes


@pytest.mark.parametrize(
    ("from_", "code"),
    [
        (b"a@example.com, b@example.com", "from_not_single_mailbox"),
        (b"undisclosed-recipients:;", "from_not_single_mailbox"),
        (b"team: a@example.com;", "from_not_single_mailbox"),
        (b"just-a-name", "from_no_domain"),
    ],
)
def test_from_must_be_one_mailbox(from_: bytes, code: str) -> None:
    raw = b"From: " + from_ + b"\r\nSubject: x\r\n\r\nbody"
    assert code in [p.code for p in check_structure(raw)]
    assert parse_from(raw) is None


def test_missing_from() -> None:
    assert [p.code for p in check_structure(b"Subject: x\r\n\r\nbody")] == ["missing_from"]


def test_display_name_address_is_not_the_from_address() -> None:
    raw = b'From: "rep@example.com" <attacker@evil.test>\r\n\r\nbody'
    found = parse_from(raw)
    assert found is not None
    assert (found.address, found.domain) == ("attacker@evil.test", "evil.test")
    assert found.display_name == "rep@example.com"


def test_encoded_word_and_idn_domain() -> None:
    raw = "From: =?utf-8?q?R=C3=A9p?= <rep@BÜRO.example>\r\n\r\nx".encode()
    found = parse_from(raw)
    assert found is not None
    assert found.domain == "xn--bro-hoa.example"


def test_stray_line_in_header_block_is_a_problem() -> None:
    raw = b"From: rep@example.com\r\nthis is not a header\r\nFrom: ceo@example.com\r\n\r\nx"
    codes = [p.code for p in check_structure(raw)]
    assert "malformed_header" in codes
    assert "multiple_from" in codes


def test_mbox_envelope_line_is_not_a_header() -> None:
    raw = b"From rep@example.com Mon Jan  1 00:00:00 2024\r\nFrom: rep@example.com\r\n\r\nx"
    assert check_structure(raw) == ()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_garbage_never_raises(data: bytes) -> None:
    problems = check_structure(data)
    assert isinstance(problems, tuple)
    parse_from(data)
    strip_untrusted_authentication_results(data, frozenset({"mx.test"}))


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from('From:<>@"(),;:\\ \r\n\tab.=?q'), max_size=300))
def test_header_shaped_garbage_never_raises(text: str) -> None:
    check_structure(("From: " + text + "\r\n\r\nx").encode())
    parse_authentication_results(text)


# ----------------------------------------------------------------- decide


def test_decide_off_is_skipped() -> None:
    assert decide(None, (), "off").outcome == "skipped"


def test_decide_unknown_mode_raises() -> None:
    with pytest.raises(ValueError, match="unknown authentication mode"):
        decide(None, (), "strict")


def test_decide_enforce() -> None:
    assert decide(results(True), (), "enforce").outcome == "pass"
    failed = decide(results(False), (), "enforce")
    assert (failed.outcome, failed.reason) == ("fail", "auth_failed")
    assert decide(results(False, temporary=True), (), "enforce").outcome == "tempfail"
    problem = (StructuralProblem("multiple_from", "2 From headers"),)
    structural = decide(results(True), problem, "enforce")
    assert (structural.outcome, structural.reason) == ("fail", "auth_failed")
    assert "multiple_from" in structural.detail
    # A structural problem beats a temporary DNS error: retrying would not help.
    assert decide(results(False, temporary=True), problem, "enforce").outcome == "fail"
    # Verification that never ran is never a pass.
    assert decide(None, (), "enforce").outcome == "tempfail"


def test_decide_report_always_passes_but_says_why() -> None:
    verdict = decide(results(False), (StructuralProblem("multiple_from", "2"),), "report")
    assert verdict.outcome == "pass"
    assert verdict.reason == ""
    assert "would fail" in verdict.detail
    assert "multiple_from" in verdict.detail
    assert "would fail" not in decide(results(True), (), "report").detail


# ----------------------------------------------------------------- DMARC


def test_parse_dmarc_record() -> None:
    rec = parse_dmarc_record("v=DMARC1; p=Reject; sp=none; pct=25; adkim=s; aspf=r; rua=mailto:x")
    assert rec is not None
    assert (rec.p, rec.sp, rec.pct, rec.adkim, rec.aspf) == ("reject", "none", 25, "s", "r")
    assert parse_dmarc_record("v=spf1 -all") is None
    assert parse_dmarc_record("p=reject; v=DMARC1") is None  # v must come first
    assert parse_dmarc_record("v=DMARC1; p=bogus") is None
    fallback = parse_dmarc_record("v=DMARC1; p=bogus; rua=mailto:x")
    assert fallback is not None
    assert fallback.p == "none"
    odd = parse_dmarc_record("v=DMARC1; p=none; pct=500; adkim=x")
    assert odd is not None
    assert odd.pct == 100
    assert odd.adkim == "r"


def test_alignment_modes() -> None:
    assert domains_aligned("example.com", "example.com", "s")
    assert domains_aligned("mail.example.com", "example.com", "r")
    assert not domains_aligned("mail.example.com", "example.com", "s")
    assert domains_aligned("a.example.co.uk", "b.example.co.uk", "r")
    assert not domains_aligned("example.co.uk", "other.co.uk", "r")
    assert not domains_aligned("evil.test", "example.com", "r")


def test_dmarc_temporary_error_only_when_it_could_change_the_verdict() -> None:
    spf_temp = MethodResult("spf", "temperror", "example.com", "")
    dkim_sub = MethodResult("dkim", "pass", "mail.example.com", "")
    record = parse_dmarc_record("v=DMARC1; p=reject")
    found = DmarcLookup(record, "example.com")
    failed_lookup = DmarcLookup(None, None, temp_error=True)
    # SPF unknown and nothing else: unknown.
    assert evaluate_dmarc("example.com", found, spf_temp, []).temporary_error
    # Relaxed DKIM alignment, but the record (strict or not?) could not be fetched: unknown.
    out = evaluate_dmarc("example.com", failed_lookup, None, [dkim_sub])
    assert out.temporary_error
    assert out.result.result == "temperror"
    # Strictly aligned: known whatever the record says.
    exact = MethodResult("dkim", "pass", "example.com", "")
    out = evaluate_dmarc("example.com", failed_lookup, None, [exact])
    assert out.aligned
    assert not out.temporary_error
    # Nothing could possibly align: a definite fail.
    evil = MethodResult("spf", "pass", "evil.test", "")
    out = evaluate_dmarc("example.com", failed_lookup, evil, [])
    assert not out.aligned
    assert not out.temporary_error


def test_dkim_policy_result_never_aligns() -> None:
    partial = MethodResult("dkim", "policy", "example.com", "l= covers 10 of 20 body bytes")
    out = evaluate_dmarc("example.com", DmarcLookup(None, None), None, [partial])
    assert not out.aligned


# ----------------------------------------------------------------- PSL


def test_public_suffix_list_algorithm() -> None:
    psl = PublicSuffixList(["// comment", "com", "uk", "co.uk", "*.ck", "!www.ck", "github.io"])
    assert psl.organizational_domain("a.b.example.com") == "example.com"
    assert psl.organizational_domain("a.example.co.uk") == "example.co.uk"
    assert psl.organizational_domain("x.y.ck") == "x.y.ck"
    assert psl.organizational_domain("a.www.ck") == "www.ck"
    assert psl.organizational_domain("me.github.io") == "me.github.io"
    assert psl.organizational_domain("co.uk") == "co.uk"
    assert psl.organizational_domain("example.unknowntld") == "example.unknowntld"


def test_default_list_is_loaded() -> None:
    assert organizational_domain("mail.example.co.uk") == "example.co.uk"
    assert organizational_domain("deep.sub.example.com") == "example.com"


# ----------------------------------------------------------------- A-R header


def test_to_header_escapes_hostile_values() -> None:
    res = AuthenticationResults(
        authserv_id="capture.test",
        methods=(
            MethodResult("dkim", "fail", 'evil"; dmarc=pass', "bad (sig)\r\nX-Injected: 1", "s;1"),
        ),
        from_domain=None,
        dmarc_policy=None,
        aligned=False,
        temporary_error=False,
        source="local",
    )
    header = res.to_header()
    assert "\r" not in header
    assert "\n" not in header
    parsed = parse_authentication_results(header)
    assert parsed is not None
    assert len(parsed.clauses) == 1
    assert parsed.clauses[0].prop("header.d") == 'evil"; dmarc=pass'
    json.dumps(res.as_dict())


def test_to_header_round_trips() -> None:
    res = results(True)
    parsed = parse_authentication_results(res.to_header())
    assert parsed is not None
    assert parsed.authserv_id == "capture.test"
    assert [(c.method, c.result) for c in parsed.clauses] == [("spf", "pass")]
    empty = AuthenticationResults("capture.test", (), None, None, False, False, "local")
    assert empty.to_header() == "capture.test; none"


def test_parse_real_world_header() -> None:
    value = (
        "mx.google.com; dkim=pass header.i=@example.com header.s=20230601 header.b=abc;"
        " spf=pass (google.com: domain of a@example.com designates 1.2.3.4 as permitted sender)"
        " smtp.mailfrom=a@example.com; dmarc=pass (p=REJECT sp=REJECT dis=NONE)"
        " header.from=example.com"
    )
    parsed = parse_authentication_results(value)
    assert parsed is not None
    assert [c.method for c in parsed.clauses] == ["dkim", "spf", "dmarc"]
    assert parsed.clauses[2].comments == ("p=REJECT sp=REJECT dis=NONE",)
    assert parse_authentication_results("x; spf") is None
    assert parse_authentication_results("x; spf=pass (unclosed") is None


def test_strip_untrusted_keeps_trusted_and_other_headers() -> None:
    raw = (
        b"Authentication-Results: evil.test; dmarc=pass\r\n header.from=example.com\r\n"
        b"Received: from a by b\r\n"
        b"Authentication-Results: mx.ours.test; spf=pass smtp.mailfrom=example.com\r\n"
        b"authentication-results: garbage (\r\n" + HEADERS + b"\r\n"
        b"Authentication-Results: in the body stays\r\n"
    )
    out = strip_untrusted_authentication_results(raw, frozenset({"mx.ours.test"}))
    assert b"evil.test" not in out
    assert b"garbage" not in out
    assert b"mx.ours.test; spf=pass" in out
    assert b"Received: from a by b\r\n" in out
    assert out.endswith(b"\r\n\r\nAuthentication-Results: in the body stays\r\n")
