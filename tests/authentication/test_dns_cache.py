"""The DNS answer cache (TTL, negative answers, failures) and the DKIM/ARC skip."""

from __future__ import annotations

import time

import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from capture_server.authentication import DnsCache, DnsConfig
from capture_server.authentication.checks import signature_headers
from capture_server.authentication.dnsclient import DnsTempError, Resolver

from .zoneserver import ZoneServer


def test_answers_are_reused_for_their_ttl(zone: ZoneServer, dns_config: DnsConfig) -> None:
    zone.txt("acme.test", "v=spf1 -all")
    cache = DnsCache(max_ttl=300)
    resolver = Resolver(dns_config, cache)
    assert resolver.txt("acme.test") == [b"v=spf1 -all"]
    zone.timeout("acme.test")  # the zone stops answering: the cached answer still holds
    asked = len(zone.queries)
    assert Resolver(dns_config, cache).txt("ACME.test") == [b"v=spf1 -all"]
    assert len(zone.queries) == asked
    with pytest.raises(DnsTempError):  # without the cache the outage shows
        Resolver(dns_config).txt("acme.test")


def test_max_ttl_bounds_the_reuse(zone: ZoneServer, dns_config: DnsConfig) -> None:
    zone.txt("acme.test", "v=spf1 -all")
    resolver = Resolver(dns_config, DnsCache(max_ttl=0.2))
    resolver.txt("acme.test")
    zone.set_txt("acme.test", "v=spf1 +all")
    assert resolver.txt("acme.test") == [b"v=spf1 -all"]
    time.sleep(0.3)
    assert resolver.txt("acme.test") == [b"v=spf1 +all"]
    off = Resolver(dns_config, DnsCache(max_ttl=0))
    zone.set_txt("acme.test", "v=spf1 ~all")
    assert off.txt("acme.test") == [b"v=spf1 ~all"]


def test_failures_and_unbounded_negatives_are_not_kept(
    zone: ZoneServer, dns_config: DnsConfig
) -> None:
    cache = DnsCache()
    resolver = Resolver(dns_config, cache)
    assert resolver.txt("_dmarc.nothing.test") == []  # NXDOMAIN without SOA: RFC 2308, no cache
    zone.txt("_dmarc.nothing.test", "v=DMARC1; p=reject")
    assert resolver.txt("_dmarc.nothing.test") == [b"v=DMARC1; p=reject"]
    zone.servfail("broken.test")
    with pytest.raises(DnsTempError):
        resolver.txt("broken.test")
    zone.servfail_names.clear()
    zone.txt("broken.test", "v=spf1 -all")
    assert resolver.txt("broken.test") == [b"v=spf1 -all"]


def test_negative_answers_live_as_long_as_the_soa_says() -> None:
    from capture_server.authentication.dnsclient import _negative_ttl

    query = dns.message.make_query("x.test", "TXT")
    response = dns.message.make_response(query)
    response.set_rcode(dns.rcode.NXDOMAIN)
    assert _negative_ttl(response) == 0
    soa = "ns.test. admin.test. 1 7200 3600 1209600 60"
    response.authority.append(
        dns.rrset.from_text("test.", 900, dns.rdataclass.IN, dns.rdatatype.SOA, soa)
    )
    assert _negative_ttl(response) == 60


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"From: a@b.test\r\nSubject: x\r\n\r\nDKIM-Signature: in the body\r\n", (False, False)),
        (b"From: a@b.test\r\ndkim-signature: v=1\r\n\r\nbody\r\n", (True, False)),
        (b"ARC-Seal: i=1\nFrom: a@b.test\n\nbody\n", (False, True)),
        (b"From: a@b.test\n ARC-Seal: folded, not a header\n\nbody\n", (False, False)),
        (b"X: y\r\nARC-Message-Signature: i=1\r\nDKIM-Signature: v=1", (True, True)),
    ],
)
def test_signature_headers_look_at_the_header_block_only(
    head: bytes, expected: tuple[bool, bool]
) -> None:
    assert signature_headers(head) == expected


def _header_block_as_before(raw: bytes) -> bytes:
    """The block signature_headers looked at when it searched the whole message for both."""
    ends = [i for i in (raw.find(b"\n\n"), raw.find(b"\n\r\n")) if i >= 0]
    return b"\n" + raw[: min(ends) + 1 if ends else len(raw)].lower()


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from([b"\n", b"\r", b"\r\n", b"x", b"DKIM-Signature:", b"ARC-Seal:"])))
def test_signature_headers_stop_at_the_same_line(pieces: list[bytes]) -> None:
    raw = b"".join(pieces)
    block = _header_block_as_before(raw)
    expected = (b"\ndkim-signature" in block, b"\narc-seal" in block)
    assert signature_headers(raw) == expected


def test_one_dnspython_resolver_serves_every_message_of_a_setting(dns_config: DnsConfig) -> None:
    """Built once a while (reading /etc/resolv.conf per message cost more than a check from
    the cache); resolve() does not change it, so threads share it."""
    first, again = Resolver(dns_config, DnsCache()), Resolver(dns_config)
    assert first._resolver is again._resolver
    other = Resolver(DnsConfig(dns_config.nameservers, dns_config.port, timeout=1.5))
    assert other._resolver is not first._resolver
    assert other._resolver.lifetime == 1.5
    assert Resolver(DnsConfig())._resolver is Resolver(DnsConfig())._resolver  # the system's
