"""A loopback stand-in for a local caching resolver: answers every query at once, NXDOMAIN,
but for the TXT records given as NAME=TEXT arguments (the benchmark's DKIM key).

capture-server checks SPF/DMARC (auth_mode "report" by default) for every message; the
benchmark's domains are .test names, and its traffic must stay on 127.0.0.1, so the servers
are pointed here (dns_nameservers) instead of at the system resolver.
Usage: python3 bench/dnsstub.py 127.0.0.1:PORT [NAME=TEXT ...]   (SIGTERM/SIGINT stops it)
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
    def __init__(self, records: dict[str, str]) -> None:
        self.transport: Any = None
        self.answered = 0
        self.records = {name.lower().rstrip(".") + ".": text for name, text in records.items()}

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            query = dns.message.from_wire(data)
        except Exception:  # garbage in: no answer, as a resolver would
            return
        response = dns.message.make_response(query)
        response.flags |= dns.flags.RA
        question = query.question[0] if query.question else None
        text = self.records.get(str(question.name).lower()) if question is not None else None
        if question is not None and text is not None and question.rdtype == dns.rdatatype.TXT:
            strings = " ".join(f'"{text[i : i + 255]}"' for i in range(0, len(text), 255))
            response.answer.append(
                dns.rrset.from_text(question.name, 300, dns.rdataclass.IN, "TXT", strings)
            )
            self.transport.sendto(response.to_wire(), addr)
            self.answered += 1
            return
        response.set_rcode(dns.rcode.NXDOMAIN)
        # As a real zone answers: with its SOA, whose minimum (60 s) lets a client keep the
        # NXDOMAIN for that long (RFC 2308); capture-server's DNS cache honours it.
        response.authority.append(SOA)
        self.transport.sendto(response.to_wire(), addr)
        self.answered += 1


async def serve(host: str, port: int, records: dict[str, str]) -> None:
    loop = asyncio.get_running_loop()
    transport, _protocol = await loop.create_datagram_endpoint(
        lambda: Stub(records), local_addr=(host, port)
    )
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
    records = dict(argument.split("=", 1) for argument in sys.argv[2:])
    asyncio.run(serve(host, int(port), records))


if __name__ == "__main__":
    main()
