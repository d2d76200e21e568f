"""One form for a client's IP address, however it reached the daemon.

An IPv4 client of a dual-stack socket, or behind a dual-stack load balancer's PROXY header,
arrives as an IPv4-mapped IPv6 address (``::ffff:192.0.2.1``). Per-IP limits, SPF (RFC 7208
§4.1, §5: the IPv4 address is the one checked), the trusted relay and proxy lists, logs and
capture events all want the plain IPv4 form, so the daemon converts where an address enters
(smtp/server.py for the socket's peer, smtp/handler.py for the PROXY source).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable


def unmapped(address: str) -> str:
    """``::ffff:192.0.2.1`` → ``192.0.2.1``; anything else (another address, "", a unix
    socket path, junk) is returned as it is. Never raises."""
    if ":" not in address:
        return address  # IPv4, "" or a name: nothing to convert
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return str(mapped) if mapped is not None else address


def address_in(address: str, networks: Iterable[str]) -> bool:
    """Whether the address is in one of the networks (addresses or CIDRs; an invalid entry
    matches nothing). An IPv4 address and its IPv4-mapped IPv6 form are one address: either
    form matches a network written in either form."""
    try:
        ip = ipaddress.ip_address(unmapped(address))
    except ValueError:
        return False
    forms: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...] = (ip,)
    if isinstance(ip, ipaddress.IPv4Address):
        forms = (ip, ipaddress.IPv6Address(f"::ffff:{ip}"))
    for entry in networks:
        try:
            network = ipaddress.ip_network(entry.strip(), strict=False)
        except ValueError:
            continue
        if any(form in network for form in forms):
            return True
    return False
