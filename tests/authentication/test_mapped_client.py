"""A client named in the IPv4-mapped IPv6 form (a dual-stack load balancer's PROXY header)
is its IPv4 address for SPF (RFC 7208 §5: an ip4: mechanism) and for the trusted relays."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.conftest import Cli, make_account, start_daemon

from .test_integration import FORGED_AR, dns_settings, lines, message
from .zoneserver import ZoneServer


@pytest.fixture
def spf_zone(zone: ZoneServer) -> ZoneServer:
    zone.txt("acme.test", "v=spf1 ip4:192.0.2.0/24 -all")
    zone.txt("_dmarc.acme.test", "v=DMARC1; p=reject")
    return zone


def send_proxied(port: int, source: str, raw: bytes, rcpt: str) -> bytes:
    """Through the load balancer (127.0.0.2), for the client `source`: DATA's reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=30,
                                  source_address=("127.0.0.2", 0)) as sock:  # fmt: skip
        reader = sock.makefile("rb")
        family, destination = (
            ("TCP6", "::ffff:127.0.0.1") if ":" in source else ("TCP4", "127.0.0.1")
        )
        sock.sendall(f"PROXY {family} {source} {destination} 40000 25\r\n".encode())
        assert reader.readline().startswith(b"220")
        for line in (b"HELO client.test", b"MAIL FROM:<rita@acme.test>",
                     f"RCPT TO:<{rcpt}>".encode(), b"DATA"):  # fmt: skip
            sock.sendall(line + b"\r\n")
            reply = reader.readline()
            assert reply[:1] in (b"2", b"3"), (line, reply)
        sock.sendall(raw + b"\r\n.\r\n")
        reply: bytes = reader.readline()
        return reply


def test_a_mapped_client_is_its_ipv4_address_for_spf_and_trusted_relays(
    database_url: str, tmp_path: Path, cli: Cli, spf_zone: ZoneServer
) -> None:
    account = make_account(cli, "enf", "acme.test")
    cli("account", "settings", "set", "enf", "auth_mode", "enforce")
    settings = {
        **dns_settings(spf_zone),
        "proxy_protocol_from": '["127.0.0.2"]',
        "trusted_relays": '["198.51.100.0/24"]',
    }
    daemon = start_daemon(database_url, tmp_path, **settings)
    try:
        # Unsigned: SPF alone (ip4:192.0.2.0/24, aligned with From) proves acme.test.
        reply = send_proxied(daemon.smtp_port, "::ffff:192.0.2.10", message("spf"), account.bcc)
        assert reply.startswith(b"250 2.0.0 queued"), reply
        # The trusted relay, named in the mapped form: its Authentication-Results are used.
        relayed = message("relayed", extra_headers=FORGED_AR)
        reply = send_proxied(daemon.smtp_port, "::ffff:198.51.100.25", relayed, account.bcc)
        assert reply.startswith(b"250 2.0.0 queued"), reply
        # Anyone else, however named, proves nothing.
        for number, source in enumerate(("::ffff:203.0.113.5", "203.0.113.5")):
            forged = message(f"forged-{number}", extra_headers=FORGED_AR)
            reply = send_proxied(daemon.smtp_port, source, forged, account.bcc)
            assert reply.startswith(b"550 5.7.26"), reply
    finally:
        assert daemon.stop() == 0
    recorded = lines(cli("events", "enf", "--json"))
    events = {e["subject"]: e for e in recorded if e["reason"] == "logged"}
    spf = events["Quote spf"]["authentication"]["results"]
    assert spf["source"] == "local" and spf["aligned"] is True
    assert {m["method"]: m["result"] for m in spf["methods"]}["spf"] == "pass"
    relayed_results = events["Quote relayed"]["authentication"]["results"]
    assert relayed_results["source"] == "trusted_upstream"
    assert relayed_results["authserv_id"] == "mx.trusted.test"
    refused = [e for e in recorded if e["reason"] == "auth_failed"]  # (no subject kept)
    assert len(refused) == 2
    assert all(e["authentication"]["results"]["source"] == "local" for e in refused)
    captured = daemon.events("message_captured")
    assert [e["client_ip"] for e in captured] == [
        "192.0.2.10", "198.51.100.25", "203.0.113.5", "203.0.113.5"
    ]  # fmt: skip
