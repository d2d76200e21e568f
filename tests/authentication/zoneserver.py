"""A tiny authoritative DNS server for tests: UDP and TCP on one loopback port.

Records are set by the test; names can be told to time out (no answer) or SERVFAIL.
Runs in a daemon thread; ``stop()`` ends it (the fixture calls it at teardown).
"""

from __future__ import annotations

import select
import socket
import struct
import threading

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset


def _txt_rdata_text(value: str) -> str:
    chunks = [value[i : i + 255] for i in range(0, len(value), 255)] or [""]
    return " ".join('"' + c.replace("\\", "\\\\").replace('"', '\\"') + '"' for c in chunks)


class ZoneServer:
    def __init__(self) -> None:
        self.records: dict[tuple[str, str], list[str]] = {}
        self.timeout_names: set[str] = set()
        self.servfail_names: set[str] = set()
        self.queries: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._udp, self._tcp = self._bind()
        self.port: int = self._udp.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, name="test-dns", daemon=True)

    # ----------------------------------------------------------------- test API
    def add(self, name: str, rdtype: str, *values: str) -> None:
        key = (name.lower().rstrip("."), rdtype.upper())
        with self._lock:
            self.records.setdefault(key, []).extend(values)

    def txt(self, name: str, *values: str) -> None:
        self.add(name, "TXT", *values)

    def set_txt(self, name: str, *values: str) -> None:
        with self._lock:
            self.records[(name.lower().rstrip("."), "TXT")] = list(values)

    def timeout(self, name: str) -> None:
        self.timeout_names.add(name.lower().rstrip("."))

    def servfail(self, name: str) -> None:
        self.servfail_names.add(name.lower().rstrip("."))

    # ----------------------------------------------------------------- plumbing
    @staticmethod
    def _bind() -> tuple[socket.socket, socket.socket]:
        for _ in range(50):
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                tcp.bind(("127.0.0.1", port))
            except OSError:
                udp.close()
                tcp.close()
                continue
            tcp.listen(16)
            return udp, tcp
        raise RuntimeError("no free port for the test DNS server")

    def start(self) -> ZoneServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._udp.close()
        self._tcp.close()

    def _answer(self, wire: bytes) -> dns.message.Message | None:
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None
        if not query.question:
            return None
        q = query.question[0]
        name = q.name.to_text(omit_final_dot=True).lower()
        rdtype = dns.rdatatype.to_text(q.rdtype)
        with self._lock:
            self.queries.append((name, rdtype))
            values = list(self.records.get((name, rdtype), []))
            exists = any(n == name or n.endswith("." + name) for n, _t in self.records)
        if name in self.timeout_names:
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if name in self.servfail_names:
            response.set_rcode(dns.rcode.SERVFAIL)
            return response
        if values:
            texts = [_txt_rdata_text(v) for v in values] if rdtype == "TXT" else values
            rrset = dns.rrset.from_text_list(q.name, 300, dns.rdataclass.IN, q.rdtype, texts)
            response.answer.append(rrset)
        elif not exists:
            response.set_rcode(dns.rcode.NXDOMAIN)
        return response

    def _serve(self) -> None:
        while not self._stop.is_set():
            readable, _, _ = select.select([self._udp, self._tcp], [], [], 0.05)
            for sock in readable:
                if sock is self._udp:
                    self._serve_udp()
                else:
                    self._serve_tcp()

    def _serve_udp(self) -> None:
        try:
            wire, addr = self._udp.recvfrom(65535)
        except OSError:
            return
        response = self._answer(wire)
        if response is None:
            return
        limit = 512
        try:
            query = dns.message.from_wire(wire)
            if query.edns >= 0:
                limit = max(512, query.payload)
        except dns.exception.DNSException:
            pass
        try:
            out = response.to_wire(max_size=limit)
        except dns.exception.TooBig:
            response.answer = []
            response.flags |= dns.flags.TC
            out = response.to_wire()
        self._udp.sendto(out, addr)

    def _serve_tcp(self) -> None:
        try:
            conn, _ = self._tcp.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(2)
            try:
                head = conn.recv(2)
                if len(head) < 2:
                    return
                (length,) = struct.unpack("!H", head)
                wire = b""
                while len(wire) < length:
                    chunk = conn.recv(length - len(wire))
                    if not chunk:
                        return
                    wire += chunk
                response = self._answer(wire)
                if response is None:
                    return
                out = response.to_wire()
                conn.sendall(struct.pack("!H", len(out)) + out)
            except OSError:
                return
