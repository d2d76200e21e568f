"""End-to-end verification against a loopback zone server with real signatures."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import dkim
import pytest

from capture_server.authentication import (
    AuthenticationResults,
    DnsConfig,
    check_structure,
    decide,
    strip_untrusted_authentication_results,
    verify_message,
)

from .conftest import RsaKey
from .zoneserver import ZoneServer

GOOD_IP = "192.0.2.10"  # in example.com's SPF
EVIL_IP = "203.0.113.66"  # in evil.test's SPF only
LIST_IP = "198.51.100.7"  # list.test, a forwarder / mailing list
SIGNED = [b"from", b"to", b"subject", b"date", b"message-id"]


def make_message(
    from_: str = "Rep <rep@example.com>",
    body: str = "Hello customer,\r\nsee you Tuesday.\r\n",
    extra_headers: str = "",
) -> bytes:
    return (
        f"{extra_headers}From: {from_}\r\n"
        "To: Customer <buyer@customer.test>\r\n"
        "Subject: Quote\r\n"
        "Date: Tue, 07 May 2024 10:00:00 +0000\r\n"
        "Message-ID: <quote-1@example.com>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        f"{body}"
    ).encode()


def sign(
    raw: bytes, domain: str, key: RsaKey, selector: str = "sel", length: bool = False
) -> bytes:
    sig: bytes = dkim.sign(
        raw,
        selector.encode(),
        domain.encode(),
        key.private_pem,
        include_headers=SIGNED,
        length=length,
    )
    return sig + raw


def verify(
    raw: bytes,
    dns: DnsConfig,
    *,
    mail_from: str = "rep@example.com",
    ip: str = GOOD_IP,
    helo: str = "mail.example.com",
    **kwargs: Any,
) -> AuthenticationResults:
    return asyncio.run(
        verify_message(
            raw,
            mail_from=mail_from,
            helo=helo,
            client_ip=ip,
            authserv_id="capture.test",
            dns=dns,
            **kwargs,
        )
    )


def result_of(results: AuthenticationResults, method: str) -> str:
    found = results.method(method)
    assert found, f"no {method} result in {results.to_header()}"
    return found[0].result


def enforce(raw: bytes, results: AuthenticationResults) -> str:
    return decide(results, check_structure(raw), "enforce").outcome


@pytest.fixture
def world(zone: ZoneServer, rsa_key: RsaKey, other_rsa_key: RsaKey) -> ZoneServer:
    zone.txt("example.com", "v=spf1 ip4:192.0.2.0/24 -all")
    zone.txt("sel._domainkey.example.com", rsa_key.dns_record)
    zone.txt("_dmarc.example.com", "v=DMARC1; p=reject; rua=mailto:d@example.com")
    zone.txt("evil.test", "v=spf1 ip4:203.0.113.0/24 -all")
    zone.txt("sel._domainkey.evil.test", other_rsa_key.dns_record)
    zone.txt("other.test", "v=spf1 -all")
    zone.txt("sel._domainkey.other.test", other_rsa_key.dns_record)
    zone.txt("list.test", "v=spf1 ip4:198.51.100.0/24 -all")
    zone.txt("arc._domainkey.list.test", other_rsa_key.dns_record)
    return zone


# ----------------------------------------------------------------- the happy path


def test_valid_signed_mail_from_reps_domain_passes(
    world: ZoneServer, dns_config: DnsConfig, rsa_key: RsaKey
) -> None:
    raw = sign(make_message(), "example.com", rsa_key)
    res = verify(raw, dns_config)
    assert result_of(res, "spf") == "pass"
    assert result_of(res, "dkim") == "pass"
    assert res.method("dkim")[0].domain == "example.com"
    assert res.method("dkim")[0].selector == "sel"
    assert result_of(res, "dmarc") == "pass"
    assert result_of(res, "arc") == "none"
    assert res.aligned
    assert not res.temporary_error
    assert res.from_domain == "example.com"
    assert res.from_address == "rep@example.com"
    assert res.dmarc_policy == "reject"
    assert res.source == "local"
    assert enforce(raw, res) == "pass"
    header = res.to_header()
    assert header.startswith("capture.test; spf=pass")
    assert "dkim=pass" in header
    assert "header.d=example.com" in header
    assert "header.s=sel" in header
    assert "dmarc=pass" in header
    assert "header.from=example.com" in header
    json.dumps(res.as_dict())


def test_spf_pass_with_aligned_mail_from_alone_passes(
    world: ZoneServer, dns_config: DnsConfig
) -> None:
    raw = make_message()
    res = verify(raw, dns_config)
    assert result_of(res, "spf") == "pass"
    assert result_of(res, "dkim") == "none"
    assert res.aligned
    assert enforce(raw, res) == "pass"


def test_spf_a_and_mx_mechanisms_use_our_resolver(zone: ZoneServer, dns_config: DnsConfig) -> None:
    zone.txt("example.com", "v=spf1 a:out.example.com mx -all")
    zone.add("out.example.com", "A", "192.0.2.99")
    zone.add("example.com", "MX", "10 mx.example.com.")
    zone.add("mx.example.com", "A", "192.0.2.25")
    raw = make_message()
    assert result_of(verify(raw, dns_config, ip="192.0.2.99"), "spf") == "pass"
    assert result_of(verify(raw, dns_config, ip="192.0.2.25"), "spf") == "pass"
    assert result_of(verify(raw, dns_config, ip="192.0.2.26"), "spf") == "fail"
    assert ("out.example.com", "A") in zone.queries


# ----------------------------------------------------------------- forgeries


def test_forged_from_without_signature_and_spf_fail_fails(
    world: ZoneServer, dns_config: DnsConfig
) -> None:
    raw = make_message()
    res = verify(raw, dns_config, ip=EVIL_IP)
    assert result_of(res, "spf") == "fail"
    assert result_of(res, "dkim") == "none"
    assert result_of(res, "dmarc") == "fail"
    assert not res.aligned
    assert not res.temporary_error
    verdict = decide(res, check_structure(raw), "enforce")
    assert verdict.outcome == "fail"
    assert verdict.reason == "auth_failed"
    assert "example.com" in verdict.detail
    report = decide(res, check_structure(raw), "report")
    assert report.outcome == "pass"
    assert "would fail" in report.detail


def test_display_name_spoof_is_attributed_to_the_real_domain(
    world: ZoneServer, dns_config: DnsConfig, other_rsa_key: RsaKey
) -> None:
    raw = sign(
        make_message(from_='"rep@example.com" <attacker@evil.test>'), "evil.test", other_rsa_key
    )
    res = verify(raw, dns_config, mail_from="attacker@evil.test", ip=EVIL_IP, helo="evil.test")
    # evil.test did authenticate itself, but it is evil.test, not example.com:
    assert res.from_domain == "evil.test"
    assert res.from_address == "attacker@evil.test"
    assert res.aligned
    assert all(m.domain != "example.com" for m in res.methods)
    assert res.as_dict()["from_address"] == "attacker@evil.test"


def test_dkim_signature_of_another_domain_is_not_aligned(
    world: ZoneServer, dns_config: DnsConfig, other_rsa_key: RsaKey
) -> None:
    raw = sign(make_message(), "other.test", other_rsa_key)
    res = verify(raw, dns_config, mail_from="bounce@other.test", ip=EVIL_IP)
    dkim_res = res.method("dkim")[0]
    assert dkim_res.result == "pass"
    assert dkim_res.domain == "other.test"
    assert result_of(res, "dmarc") == "fail"
    assert not res.aligned
    assert enforce(raw, res) == "fail"


def test_two_from_headers_fail_structurally(world: ZoneServer, dns_config: DnsConfig) -> None:
    raw = make_message(extra_headers="From: Someone <someone@evil.test>\r\n")
    problems = check_structure(raw)
    assert [p.code for p in problems] == ["multiple_from"]
    res = verify(raw, dns_config)
    assert res.from_domain is None
    assert not res.aligned
    assert result_of(res, "dmarc") == "permerror"
    verdict = decide(res, problems, "enforce")
    assert verdict.outcome == "fail"
    assert verdict.reason == "auth_failed"


def test_prepended_from_over_a_valid_signature(
    world: ZoneServer, dns_config: DnsConfig, rsa_key: RsaKey
) -> None:
    signed = sign(make_message(), "example.com", rsa_key)
    assert result_of(verify(signed, dns_config, ip=EVIL_IP), "dkim") == "pass"
    replay = b"From: CEO <ceo@example.com>\r\n" + signed
    assert "multiple_from" in [p.code for p in check_structure(replay)]
    res = verify(replay, dns_config, ip=EVIL_IP)
    # dkimpy hashes the extra From too, so the old signature no longer verifies.
    assert result_of(res, "dkim") == "fail"
    assert not res.aligned
    assert decide(res, check_structure(replay), "enforce").outcome == "fail"


def test_from_with_space_before_colon_is_seen(
    world: ZoneServer, dns_config: DnsConfig, rsa_key: RsaKey
) -> None:
    signed = sign(make_message(), "example.com", rsa_key)
    replay = b"From : CEO <ceo@example.com>\r\n" + signed
    codes = [p.code for p in check_structure(replay)]
    assert "multiple_from" in codes
    assert "malformed_header" in codes


def test_l_tag_with_appended_content_does_not_count(
    world: ZoneServer, dns_config: DnsConfig, rsa_key: RsaKey
) -> None:
    signed = sign(make_message(), "example.com", rsa_key, length=True)
    res_exact = verify(signed, dns_config, ip=EVIL_IP)
    assert result_of(res_exact, "dkim") == "pass"
    assert res_exact.aligned

    appended = signed + b"\r\nP.S. wire the money to account 1234.\r\n"
    res = verify(appended, dns_config, ip=EVIL_IP)
    dkim_res = res.method("dkim")[0]
    assert dkim_res.result == "policy"
    assert "l= covers" in dkim_res.detail
    assert not res.aligned
    assert enforce(appended, res) == "fail"


def test_body_modification_is_a_body_hash_failure(
    world: ZoneServer, dns_config: DnsConfig, rsa_key: RsaKey
) -> None:
    signed = sign(make_message(), "example.com", rsa_key)
    tampered = signed.replace(b"Tuesday", b"Wednesday")
    res = verify(tampered, dns_config, ip=EVIL_IP)
    assert res.method("dkim")[0].result == "fail"
    assert res.method("dkim")[0].detail == "body hash mismatch"


def test_every_signature_is_verified_and_recorded(
    world: ZoneServer, dns_config: DnsConfig, rsa_key: RsaKey, other_rsa_key: RsaKey
) -> None:
    raw = sign(sign(make_message(), "example.com", rsa_key), "other.test", other_rsa_key)
    res = verify(raw, dns_config, ip=EVIL_IP)
    assert [(m.domain, m.result) for m in res.method("dkim")] == [
        ("other.test", "pass"),
        ("example.com", "pass"),
    ]
    assert res.aligned


def test_signature_with_unpublished_key_is_permerror(
    world: ZoneServer, dns_config: DnsConfig, rsa_key: RsaKey
) -> None:
    raw = sign(make_message(), "example.com", rsa_key, selector="gone")
    res = verify(raw, dns_config, ip=EVIL_IP)
    assert res.method("dkim")[0].result == "permerror"
    assert not res.aligned


# ----------------------------------------------------------------- Authentication-Results


FORGED_AR = (
    "Authentication-Results: mx.trusted.test; spf=pass smtp.mailfrom=example.com;\r\n"
    " dkim=pass header.d=example.com; dmarc=pass header.from=example.com\r\n"
)


def test_forged_authentication_results_from_untrusted_relay_are_ignored(
    world: ZoneServer, dns_config: DnsConfig
) -> None:
    raw = make_message(extra_headers=FORGED_AR)
    trusted = frozenset({"mx.trusted.test"})
    # The client is not a trusted relay: verify locally, ignore the header.
    res = verify(
        raw,
        dns_config,
        ip=EVIL_IP,
        trusted_relays=frozenset({"10.0.0.1"}),
        trusted_authserv_ids=trusted,
    )
    assert res.source == "local"
    assert not res.aligned
    assert enforce(raw, res) == "fail"
    # A trusted relay, but the header's authserv-id is not one we trust.
    res2 = verify(
        raw,
        dns_config,
        ip=EVIL_IP,
        trusted_relays=frozenset({EVIL_IP}),
        trusted_authserv_ids=frozenset({"mx.ours.test"}),
    )
    assert res2.source == "local"
    assert not res2.aligned
    # The helper strips it.
    stripped = strip_untrusted_authentication_results(raw, frozenset({"mx.ours.test"}))
    assert b"Authentication-Results" not in stripped
    assert stripped.endswith(b"see you Tuesday.\r\n")


def test_trusted_relay_header_is_accepted(world: ZoneServer, dns_config: DnsConfig) -> None:
    raw = make_message(extra_headers=FORGED_AR)
    res = verify(
        raw,
        dns_config,
        ip="10.1.2.3",
        trusted_relays=frozenset({"10.1.0.0/16"}),
        trusted_authserv_ids=frozenset({"mx.trusted.test"}),
    )
    assert res.source == "trusted_upstream"
    assert res.authserv_id == "mx.trusted.test"
    assert res.aligned
    assert res.from_domain == "example.com"
    assert result_of(res, "dkim") == "pass"
    assert enforce(raw, res) == "pass"
    kept = strip_untrusted_authentication_results(raw, frozenset({"mx.trusted.test"}))
    assert kept == raw


def test_trusted_header_for_another_from_domain_does_not_align(
    world: ZoneServer, dns_config: DnsConfig
) -> None:
    ar = "Authentication-Results: mx.trusted.test; dmarc=pass header.from=evil.test\r\n"
    raw = make_message(extra_headers=ar)
    res = verify(
        raw,
        dns_config,
        ip="10.1.2.3",
        trusted_relays=frozenset({"10.1.2.3"}),
        trusted_authserv_ids=frozenset({"mx.trusted.test"}),
    )
    assert res.source == "trusted_upstream"
    assert not res.aligned


def test_trusted_header_without_dmarc_is_aligned_locally(
    world: ZoneServer, dns_config: DnsConfig
) -> None:
    ar = (
        "Authentication-Results: mx.trusted.test; spf=fail smtp.mailfrom=x@evil.test;\r\n"
        " dkim=pass header.d=mail.example.com\r\n"
    )
    raw = make_message(extra_headers=ar)
    res = verify(
        raw,
        dns_config,
        ip="10.1.2.3",
        trusted_relays=frozenset({"10.1.2.3"}),
        trusted_authserv_ids=frozenset({"mx.trusted.test"}),
    )
    assert res.source == "trusted_upstream"
    assert res.aligned


# ----------------------------------------------------------------- ARC


def _arc_forwarded(rsa_key: RsaKey, other_rsa_key: RsaKey) -> bytes:
    # dkimpy's ARC *signing* needs the optional "authres" package; verifying does not.
    pytest.importorskip("authres")
    original = sign(make_message(), "example.com", rsa_key)
    with_ar = (
        b"Authentication-Results: list.test; dkim=pass header.d=example.com;"
        b" spf=pass smtp.mailfrom=example.com; dmarc=pass header.from=example.com\r\n" + original
    )
    # The list rewrites the subject (breaking the DKIM signature), then seals.
    modified = with_ar.replace(b"Subject: Quote", b"Subject: [list] Quote")
    arc_headers = dkim.arc_sign(
        modified, b"arc", b"list.test", other_rsa_key.private_pem, b"list.test"
    )
    return b"".join(arc_headers) + modified


def test_valid_arc_chain_is_reported_but_never_grants_a_pass(
    world: ZoneServer, dns_config: DnsConfig, rsa_key: RsaKey, other_rsa_key: RsaKey
) -> None:
    raw = _arc_forwarded(rsa_key, other_rsa_key)
    res = verify(raw, dns_config, mail_from="bounce@list.test", ip=LIST_IP, helo="list.test")
    assert result_of(res, "arc") == "pass"
    assert result_of(res, "dkim") == "fail"
    assert not res.aligned
    assert enforce(raw, res) == "fail"


def test_hostile_arc_chain_fails(
    world: ZoneServer, dns_config: DnsConfig, rsa_key: RsaKey, other_rsa_key: RsaKey
) -> None:
    raw = _arc_forwarded(rsa_key, other_rsa_key)
    # Forge the seal: claim the list vouched with cv=pass on a first instance (invalid),
    # and corrupt the seal's signature.
    head, sep, rest = raw.partition(b"ARC-Seal: ")
    assert sep
    forged = head + sep + rest.replace(b"cv=none", b"cv=pass", 1)
    res = verify(forged, dns_config, mail_from="bounce@list.test", ip=LIST_IP, helo="list.test")
    assert result_of(res, "arc") == "fail"
    assert not res.aligned
    assert enforce(forged, res) == "fail"

    seal_start = raw.index(b"ARC-Seal: ")
    b_at = raw.index(b" b=", seal_start) + 3
    corrupted = raw[:b_at] + (b"A" if raw[b_at : b_at + 1] != b"A" else b"B") + raw[b_at + 1 :]
    res2 = verify(corrupted, dns_config, mail_from="bounce@list.test", ip=LIST_IP, helo="list.test")
    assert result_of(res2, "arc") == "fail"


def test_made_up_arc_set_fails(world: ZoneServer, dns_config: DnsConfig) -> None:
    # A made-up ARC set from nowhere, with an unverifiable signature.
    fake = (
        b"ARC-Seal: i=1; a=rsa-sha256; cv=none; d=example.com; s=sel; t=1; b=Zm9v\r\n"
        b"ARC-Message-Signature: i=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com;"
        b" s=sel; h=from; bh=Zm9v; b=Zm9v\r\n"
        b"ARC-Authentication-Results: i=1; example.com; dmarc=pass\r\n" + make_message()
    )
    res3 = verify(fake, dns_config, ip=EVIL_IP)
    assert result_of(res3, "arc") == "fail"
    assert not res3.aligned
    assert enforce(fake, res3) == "fail"


# ----------------------------------------------------------------- DNS trouble


def test_dns_timeout_is_temperror_and_tempfail(world: ZoneServer, dns_config: DnsConfig) -> None:
    world.timeout("example.com")  # SPF record look-up never answers
    raw = make_message()

    async def run_with_ticker() -> tuple[AuthenticationResults, int]:
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.02)

        task = asyncio.create_task(ticker())
        res = await verify_message(
            raw,
            mail_from="rep@example.com",
            helo="mail.example.com",
            client_ip=GOOD_IP,
            authserv_id="capture.test",
            dns=dns_config,
        )
        done.set()
        await task
        return res, ticks

    started = time.monotonic()
    res, ticks = asyncio.run(run_with_ticker())
    assert time.monotonic() - started < 5
    assert ticks >= 5  # the event loop kept running while DNS waited
    assert result_of(res, "spf") == "temperror"
    assert result_of(res, "dmarc") == "temperror"
    assert res.temporary_error
    assert not res.aligned
    verdict = decide(res, check_structure(raw), "enforce")
    assert verdict.outcome == "tempfail"
    assert verdict.reason == ""
    assert decide(res, check_structure(raw), "report").outcome == "pass"


def test_dkim_key_servfail_is_temperror(
    world: ZoneServer, dns_config: DnsConfig, rsa_key: RsaKey
) -> None:
    world.servfail("sel._domainkey.example.com")
    raw = sign(make_message(), "example.com", rsa_key)
    res = verify(raw, dns_config, ip=EVIL_IP)
    assert result_of(res, "dkim") == "temperror"
    assert res.temporary_error
    assert enforce(raw, res) == "tempfail"


def test_dmarc_record_servfail_does_not_matter_when_strictly_aligned(
    world: ZoneServer, dns_config: DnsConfig, rsa_key: RsaKey
) -> None:
    world.servfail("_dmarc.example.com")
    raw = sign(make_message(), "example.com", rsa_key)
    res = verify(raw, dns_config, ip=EVIL_IP)
    assert res.aligned
    assert not res.temporary_error
    assert enforce(raw, res) == "pass"
    # ... and a message with nothing aligned fails outright, whatever the record says.
    res2 = verify(make_message(), dns_config, ip=EVIL_IP)
    assert not res2.aligned
    assert not res2.temporary_error
    assert enforce(make_message(), res2) == "fail"


# ----------------------------------------------------------------- DMARC details


def test_dmarc_relaxed_vs_strict_spf_alignment_with_subdomain(
    world: ZoneServer, dns_config: DnsConfig
) -> None:
    world.txt("bounce.example.com", "v=spf1 ip4:192.0.2.0/24 -all")
    raw = make_message()
    relaxed = verify(raw, dns_config, mail_from="b@bounce.example.com")
    assert result_of(relaxed, "spf") == "pass"
    assert relaxed.aligned

    world.set_txt("_dmarc.example.com", "v=DMARC1; p=reject; aspf=s")
    strict = verify(raw, dns_config, mail_from="b@bounce.example.com")
    assert result_of(strict, "spf") == "pass"
    assert result_of(strict, "dmarc") == "fail"
    assert not strict.aligned
    assert enforce(raw, strict) == "fail"


def test_dmarc_relaxed_vs_strict_dkim_alignment_with_subdomain(
    world: ZoneServer, dns_config: DnsConfig, rsa_key: RsaKey
) -> None:
    world.txt("sel._domainkey.mail.example.com", rsa_key.dns_record)
    raw = sign(make_message(), "mail.example.com", rsa_key)
    assert verify(raw, dns_config, ip=EVIL_IP).aligned
    world.set_txt("_dmarc.example.com", "v=DMARC1; p=quarantine; adkim=s")
    res = verify(raw, dns_config, ip=EVIL_IP)
    assert not res.aligned
    assert res.dmarc_policy == "quarantine"


def test_subdomain_from_uses_organisational_record_and_sp(
    world: ZoneServer, dns_config: DnsConfig
) -> None:
    world.set_txt("_dmarc.example.com", "v=DMARC1; p=reject; sp=quarantine")
    world.txt("eu.example.com", "v=spf1 ip4:192.0.2.0/24 -all")
    raw = make_message(from_="rep@eu.example.com")
    res = verify(raw, dns_config, mail_from="rep@eu.example.com")
    assert res.from_domain == "eu.example.com"
    assert res.dmarc_policy == "quarantine"
    assert res.aligned
    assert ("_dmarc.eu.example.com", "TXT") in world.queries


@pytest.mark.parametrize(
    ("record", "policy"),
    [
        ("v=DMARC1; p=reject; pct=0", "quarantine"),
        ("v=DMARC1; p=quarantine; pct=0", "none"),
        ("v=DMARC1; p=none; pct=0", "none"),
        ("v=DMARC1; p=reject; pct=50", "reject"),
    ],
)
def test_pct_handling(world: ZoneServer, dns_config: DnsConfig, record: str, policy: str) -> None:
    world.set_txt("_dmarc.example.com", record)
    raw = make_message()
    res = verify(raw, dns_config, ip=EVIL_IP)
    assert res.dmarc_policy == policy
    # pct only changes what the owner asks for; enforce still requires alignment.
    assert not res.aligned
    assert enforce(raw, res) == "fail"


def test_no_dmarc_record_requires_an_aligned_pass(world: ZoneServer, dns_config: DnsConfig) -> None:
    world.txt("nodmarc.test", "v=spf1 ip4:192.0.2.0/24 -all")
    raw = make_message(from_="rep@nodmarc.test")
    ok = verify(raw, dns_config, mail_from="rep@nodmarc.test")
    assert result_of(ok, "dmarc") == "none"
    assert ok.dmarc_policy is None
    assert ok.aligned
    assert enforce(raw, ok) == "pass"
    bad = verify(raw, dns_config, mail_from="rep@nodmarc.test", ip=EVIL_IP)
    assert result_of(bad, "dmarc") == "none"
    assert not bad.aligned
    assert enforce(raw, bad) == "fail"


def test_null_sender_uses_helo_identity(world: ZoneServer, dns_config: DnsConfig) -> None:
    world.txt("mail.example.com", "v=spf1 ip4:192.0.2.0/24 -all")
    res = verify(make_message(), dns_config, mail_from="")
    spf_res = res.method("spf")[0]
    assert spf_res.identity == "helo"
    assert spf_res.domain == "mail.example.com"
    assert spf_res.result == "pass"
    assert "smtp.helo=mail.example.com" in res.to_header()
    assert res.aligned  # relaxed alignment of the HELO domain


def test_ed25519_signature(world: ZoneServer, dns_config: DnsConfig) -> None:
    nacl_signing = pytest.importorskip("nacl.signing")
    import base64

    key = nacl_signing.SigningKey.generate()
    world.txt(
        "ed._domainkey.example.com",
        "v=DKIM1; k=ed25519; p=" + base64.b64encode(bytes(key.verify_key)).decode(),
    )
    raw = make_message()
    sig = dkim.sign(
        raw,
        b"ed",
        b"example.com",
        base64.b64encode(bytes(key)),
        signature_algorithm=b"ed25519-sha256",
        include_headers=SIGNED,
    )
    res = verify(sig + raw, dns_config, ip=EVIL_IP)
    assert result_of(res, "dkim") == "pass"
    assert res.aligned


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff\xfe garbage without headers",
        b"DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=sel; h=from; bh=; b=\r\n\r\nx",
        b"DKIM-Signature: ;;;==\r\nFrom: rep@example.com\r\n\r\nx",
        b"DKIM-Signature: v=1; a=rsa-sha1; d=example.com; s=sel; h=from; bh=AA==; b=AA==\r\n"
        b"From: rep@example.com\r\n\r\nx",
        b"ARC-Seal: i=99999999999999999999; cv=pass\r\nFrom: rep@example.com\r\n\r\nx",
        b"DKIM-Signature: v=1; a=rsa-sha256; d=x.test; s=s; h=from; bh=AA==; b=AA==\r\n" * 20
        + b"From: rep@example.com\r\n\r\nx",
        b"From: rep@example.com\r\n" + b"X-Long: " + b"a" * 200_000 + b"\r\n\r\nx",
    ],
)
def test_hostile_messages_never_raise(world: ZoneServer, dns_config: DnsConfig, raw: bytes) -> None:
    res = verify(raw, dns_config, ip=EVIL_IP)
    assert not res.aligned
    assert len(res.method("dkim")) <= 8
    json.dumps(res.as_dict())
    assert enforce(raw, res) == "fail"


def test_too_many_arc_sets_fail_without_look_ups(world: ZoneServer, dns_config: DnsConfig) -> None:
    sets = b"".join(
        b"ARC-Seal: i=%d; a=rsa-sha256; cv=pass; d=slow.test; s=s; b=AA==\r\n" % i
        for i in range(1, 12)
    )
    world.timeout("s._domainkey.slow.test")
    res = verify(sets + make_message(), dns_config, ip=EVIL_IP)
    assert result_of(res, "arc") == "fail"
    assert ("s._domainkey.slow.test", "TXT") not in world.queries


def test_unparseable_trusted_header_does_not_fall_through_to_a_lower_copy(
    world: ZoneServer, dns_config: DnsConfig
) -> None:
    broken = "Authentication-Results: mx.trusted.test; dkim=pass (unclosed\r\n"
    raw = make_message(extra_headers=broken + FORGED_AR)
    res = verify(
        raw,
        dns_config,
        ip=EVIL_IP,
        trusted_relays=frozenset({EVIL_IP}),
        trusted_authserv_ids=frozenset({"mx.trusted.test"}),
    )
    assert res.source == "local"
    assert not res.aligned
