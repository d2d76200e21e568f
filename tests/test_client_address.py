"""One form per client address (capture_server/client_address.py)."""

from __future__ import annotations

import pytest

from capture_server.authentication.verify import _ip_in
from capture_server.client_address import address_in, unmapped
from capture_server.config import Settings
from capture_server.smtp.server import SessionGuard


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("::FFFF:C000:0201", "192.0.2.1"),  # the same address, hex and upper case
        ("0:0:0:0:0:ffff:10.0.0.5", "10.0.0.5"),
        ("::ffff:127.0.0.1%eth0", "127.0.0.1"),  # a zone id on a mapped address
        ("192.0.2.1", "192.0.2.1"),
        ("2001:db8::1", "2001:db8::1"),
        ("fe80::1%eth0", "fe80::1%eth0"),  # a zone id: kept, no error
        ("::1", "::1"),
        ("::192.0.2.1", "::192.0.2.1"),  # IPv4-compatible (deprecated), not mapped
        ("64:ff9b::192.0.2.1", "64:ff9b::192.0.2.1"),  # NAT64, not mapped
        ("::ffff:0:192.0.2.1", "::ffff:0:192.0.2.1"),  # SIIT, not mapped
        ("", ""),
        ("/run/capture-server/smtp.sock", "/run/capture-server/smtp.sock"),
        ("[::ffff:192.0.2.1]", "[::ffff:192.0.2.1]"),  # not an address as it is
        ("not:an:address", "not:an:address"),
        ("fe80::1%", "fe80::1%"),
        ("\x00::ffff:1.2.3.4", "\x00::ffff:1.2.3.4"),
    ],
)
def test_unmapped_converts_mapped_addresses_only(address: str, expected: str) -> None:
    assert unmapped(address) == expected


@pytest.mark.parametrize(
    ("address", "networks", "expected"),
    [
        ("::ffff:10.0.0.5", ["10.0.0.5"], True),  # a proxy on a dual-stack socket
        ("::ffff:10.0.0.5", ["10.0.0.0/8"], True),
        ("10.0.0.5", ["::ffff:10.0.0.5"], True),  # configured in the mapped form
        ("10.0.0.5", ["::ffff:10.0.0.0/104"], True),
        ("::ffff:10.0.0.5", ["::ffff:10.0.0.0/104"], True),
        ("::ffff:10.1.0.5", ["10.0.0.0/16"], False),
        ("10.0.0.5", ["10.0.0.6", "2001:db8::/32"], False),
        ("2001:db8::5", ["2001:db8::/32"], True),
        ("fe80::1%eth0", ["fe80::/10"], True),
        ("fe80::1%eth0", ["10.0.0.0/8"], False),
        ("", ["0.0.0.0/0", "::/0"], False),
        ("/run/smtp.sock", ["0.0.0.0/0"], False),
        ("10.0.0.5", ["junk", " 10.0.0.0/8 "], True),  # a bad entry matches nothing
        ("10.0.0.5", [], False),
    ],
)
def test_address_in_treats_both_forms_as_one(
    address: str, networks: list[str], expected: bool
) -> None:
    assert address_in(address, networks) is expected


def test_proxy_and_trusted_relay_lists_match_the_mapped_form() -> None:
    guard = SessionGuard(Settings(proxy_protocol_from=("10.0.0.5", "192.0.2.0/24")))
    assert guard.is_proxy("::ffff:10.0.0.5") and guard.is_proxy("10.0.0.5")
    assert guard.is_proxy("::ffff:192.0.2.77")
    assert not guard.is_proxy("::ffff:10.0.0.6") and not guard.is_proxy("")
    assert _ip_in("::ffff:198.51.100.4", ["198.51.100.0/24"])
    assert _ip_in("[::ffff:198.51.100.4]", ["198.51.100.4"])
    assert not _ip_in("::ffff:198.51.100.4", ["198.51.101.0/24"])
