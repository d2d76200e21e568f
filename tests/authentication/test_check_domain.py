"""The admin readiness report, against the loopback zone server."""

from __future__ import annotations

import asyncio
import json

from capture_server.authentication import DnsConfig, check_domain, parse_spf_record

from .conftest import RsaKey
from .zoneserver import ZoneServer


def test_ready_domain(zone: ZoneServer, dns_config: DnsConfig, rsa_key: RsaKey) -> None:
    zone.txt("example.com", "v=spf1 ip4:192.0.2.0/24 include:_spf.mail.test ~all", "google-site=x")
    zone.txt("_dmarc.example.com", "v=DMARC1; p=quarantine; sp=reject; pct=100")
    zone.txt("selector1._domainkey.example.com", rsa_key.dns_record)
    zone.txt("k1._domainkey.example.com", "v=DKIM1; k=rsa; p=")
    zone.add("example.com", "MX", "10 mx1.example.com.")
    report = asyncio.run(check_domain("Example.COM.", dns_config))
    json.dumps(report)
    assert report["domain"] == "example.com"
    assert report["ready"] is True
    spf = report["spf"]
    assert isinstance(spf, dict)
    assert spf["present"]
    assert spf["valid"]
    assert spf["mechanisms"] == ["ip4:192.0.2.0/24", "include:_spf.mail.test", "~all"]
    dmarc = report["dmarc"]
    assert isinstance(dmarc, dict)
    assert (dmarc["policy"], dmarc["subdomain_policy"]) == ("quarantine", "reject")
    dkim = report["dkim"]
    assert isinstance(dkim, dict)
    found = {f["selector"]: f for f in dkim["found"]}
    assert found["selector1"]["valid"]
    assert found["selector1"]["bits"] == 2048
    assert found["k1"]["revoked"]
    mx = report["mx"]
    assert isinstance(mx, dict)
    assert mx["hosts"] == ["10 mx1.example.com"]


def test_unready_domain(zone: ZoneServer, dns_config: DnsConfig) -> None:
    zone.txt("bare.test", "v=spf1 +all", "v=spf1 -all")
    zone.timeout("_dmarc.bare.test")
    report = asyncio.run(check_domain("bare.test", dns_config))
    assert report["ready"] is False
    problems = report["problems"]
    assert isinstance(problems, list)
    assert any("more than one" in p for p in problems)
    assert any(p.startswith("DMARC: DNS temporary error") for p in problems)
    assert any(p.startswith("DKIM") for p in problems)
    assert any(p.startswith("MX") for p in problems)


def test_parse_spf_record() -> None:
    ok = parse_spf_record("v=spf1 mx a:x.test ip6:2001:db8::/32 redirect=_spf.x.test")
    assert ok["valid"]
    assert ok["dns_lookup_terms"] == 3
    bad = parse_spf_record("v=spf1 ip4:300.1.1.1 frobnicate -all")
    assert not bad["valid"]
    lax = parse_spf_record("v=spf1 +all")
    assert lax["valid"]
    problems = lax["problems"]
    assert isinstance(problems, list)
    assert any("+all" in str(p) for p in problems)
    assert not parse_spf_record("v=DMARC1; p=none")["valid"]
