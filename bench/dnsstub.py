"""A loopback stand-in for a local caching resolver: answers every query at once, NXDOMAIN.

capture-server checks SPF/DMARC (auth_mode "report" by default) for every message; the
benchmark's domains are .test names, and its traffic must stay on 127.0.0.1, so the servers
are pointed here (dns_nameservers) instead of at the system resolver.
Usage: python3 bench/dnsstub.py 127.0.0.1:PORT   (SIGTERM or SIGINT stops it)
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

SOA = dns.rrset.from_text(
    "test.", 3600, dns.rdataclass.IN, dns.rdatatype.SOA, "ns.test. test. 1 7200 3600 1209600 60"
)


class Stub(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.transport: Any = None
        self.answered = 0

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            query = dns.message.from_wire(data)
        except Exception:  # garbage in: no answer, as a resolver would
            return
        response = dns.message.make_response(query)
        response.set_rcode(dns.rcode.NXDOMAIN)
        response.flags |= dns.flags.RA
        # As a real zone answers: with its SOA, whose minimum (60 s) lets a client keep the
        # NXDOMAIN for that long (RFC 2308); capture-server's DNS cache honours it.
        response.authority.append(SOA)
        self.transport.sendto(response.to_wire(), addr)
        self.answered += 1


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    transport, _protocol = await loop.create_datagram_endpoint(Stub, local_addr=(host, port))
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"dns stub on {host}:{port}", flush=True)
    await stop.wait()
    transport.close()


def main() -> None:
    host, _, port = sys.argv[1].rpartition(":")
    if host != "127.0.0.1":
        sys.exit("the DNS stub listens on 127.0.0.1 only")
    asyncio.run(serve(host, int(port)))


if __name__ == "__main__":
    main()
