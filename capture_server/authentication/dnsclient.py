"""Blocking DNS look-ups over dnspython, shared by SPF, DKIM, ARC and DMARC.

Every look-up is bounded by ``DnsConfig.timeout``.  A time-out, SERVFAIL, refusal or
any other failure that says nothing about the name becomes :class:`DnsTempError`;
NXDOMAIN and "no data" become an empty answer.  The functions here block: callers
run them in a worker thread (``asyncio.to_thread``).
"""

from __future__ import annotations

from dataclasses import dataclass

import dns.exception
import dns.name
import dns.rdata
import dns.rdatatype
import dns.resolver

__all__ = ["DnsConfig", "DnsTempError", "Resolver", "to_ascii_domain"]


@dataclass(frozen=True)
class DnsConfig:
    """Where and how long to ask.  Empty ``nameservers`` means the system resolver."""

    nameservers: tuple[str, ...] = ()
    port: int = 53
    timeout: float = 3.0


class DnsTempError(Exception):
    """A look-up failed for a reason that may go away (time-out, SERVFAIL, no server)."""


def to_ascii_domain(domain: str) -> str | None:
    """Lower-case A-label form of ``domain`` without the final dot, or None when invalid."""
    d = domain.strip().rstrip(".").lower()
    if not d or len(d) > 253:
        return None
    if not d.isascii():
        try:
            d = d.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    labels = d.split(".")
    if any(not label or len(label) > 63 for label in labels):
        return None
    if any(c.isspace() or ord(c) < 0x21 or ord(c) > 0x7E for c in d):
        return None
    return d


class Resolver:
    """A thin, thread-safe wrapper around ``dns.resolver.Resolver``."""

    def __init__(self, config: DnsConfig) -> None:
        self.config = config
        self._error: str | None = None
        resolver: dns.resolver.Resolver
        if config.nameservers:
            resolver = dns.resolver.Resolver(configure=False)
            resolver.nameservers = list(config.nameservers)
            resolver.port = config.port
        else:
            try:
                resolver = dns.resolver.Resolver(configure=True)
            except dns.resolver.NoResolverConfiguration as exc:  # pragma: no cover - host setup
                resolver = dns.resolver.Resolver(configure=False)
                self._error = f"no resolver configuration: {exc}"
        resolver.timeout = config.timeout
        resolver.lifetime = config.timeout
        resolver.retry_servfail = False
        resolver.cache = None
        self._resolver = resolver

    def query(self, name: str, rdtype: str) -> list[dns.rdata.Rdata]:
        """Records of ``rdtype`` at ``name`` ([] for NXDOMAIN / no data).

        Raises DnsTempError when the answer could not be had.
        """
        if self._error is not None:
            raise DnsTempError(self._error)
        try:
            qname = dns.name.from_text(name)
        except (dns.exception.DNSException, ValueError, UnicodeError):
            return []
        try:
            answer = self._resolver.resolve(
                qname,
                dns.rdatatype.from_text(rdtype),
                raise_on_no_answer=False,
                search=False,
                lifetime=self.config.timeout,
            )
        except dns.resolver.NXDOMAIN:
            return []
        except dns.resolver.NoAnswer:  # pragma: no cover - raise_on_no_answer=False
            return []
        except dns.resolver.YXDOMAIN:
            return []
        except dns.exception.Timeout as exc:
            raise DnsTempError(f"DNS timeout for {name} {rdtype}") from exc
        except dns.resolver.NoNameservers as exc:
            raise DnsTempError(f"DNS server failure for {name} {rdtype}") from exc
        except dns.exception.DNSException as exc:
            raise DnsTempError(f"DNS error for {name} {rdtype}: {type(exc).__name__}") from exc
        except OSError as exc:
            raise DnsTempError(f"DNS network error for {name} {rdtype}") from exc
        if answer.rrset is None:
            return []
        return list(answer.rrset)

    def txt(self, name: str) -> list[bytes]:
        """TXT records at ``name``, each record's strings joined."""
        out: list[bytes] = []
        for rdata in self.query(name, "TXT"):
            strings = getattr(rdata, "strings", ())
            out.append(b"".join(strings))
        return out
