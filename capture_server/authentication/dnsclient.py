"""Blocking DNS look-ups over dnspython, shared by SPF, DKIM, ARC and DMARC.

Every look-up is bounded by ``DnsConfig.timeout``.  A time-out, SERVFAIL, refusal or
any other failure that says nothing about the name becomes :class:`DnsTempError`;
NXDOMAIN and "no data" become an empty answer.  The functions here block: callers
run them in a worker thread (``asyncio.to_thread``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import dns.exception
import dns.message
import dns.name
import dns.rdata
import dns.rdatatype
import dns.resolver

__all__ = ["DnsCache", "DnsConfig", "DnsTempError", "Resolver", "to_ascii_domain"]


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


_Key = tuple[tuple[str, ...], int, str, str]


class DnsCache:
    """Answers kept for their TTL (at most ``max_ttl``), shared by the daemon's look-ups.

    The sender's SPF and DMARC records are nearly always the same few domains, so most
    messages need no DNS round trip at all. Negative answers are kept only as long as the
    zone's SOA allows (RFC 2308: without one, not at all); failures are never kept.
    """

    def __init__(self, max_ttl: float = 300.0, max_entries: int = 10_000) -> None:
        self.max_ttl = max_ttl
        self.max_entries = max_entries
        self._entries: dict[_Key, tuple[float, list[dns.rdata.Rdata]]] = {}
        self._lock = threading.Lock()

    def get(self, key: _Key) -> list[dns.rdata.Rdata] | None:
        found = self._entries.get(key)
        if found is None or found[0] <= time.monotonic():
            return None
        return found[1]

    def put(self, key: _Key, ttl: float, records: list[dns.rdata.Rdata]) -> None:
        ttl = min(ttl, self.max_ttl)
        if ttl <= 0:
            return
        with self._lock:
            if len(self._entries) >= self.max_entries:
                now = time.monotonic()
                self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
                if len(self._entries) >= self.max_entries:
                    self._entries.clear()
            self._entries[key] = (time.monotonic() + ttl, records)


def _negative_ttl(response: dns.message.Message | None) -> float:
    """How long "no such name/data" may be believed: the SOA's TTL and minimum, the lower."""
    if response is None:
        return 0.0
    for rrset in response.authority:
        if rrset.rdtype == dns.rdatatype.SOA and len(rrset):
            return float(min(rrset.ttl, getattr(rrset[0], "minimum", 0)))
    return 0.0


# dnspython resolvers by settings, with their configuration error. Built once a while, not
# per message: reading /etc/resolv.conf costs more than a check answered from the cache.
# resolve() does not change a resolver, so threads share one.
_RESOLVER_SECONDS = 30.0  # an edited /etc/resolv.conf counts after this long
_resolvers: dict[DnsConfig, tuple[float, dns.resolver.Resolver, str | None]] = {}


def _dns_resolver(config: DnsConfig) -> tuple[dns.resolver.Resolver, str | None]:
    now = time.monotonic()
    built = _resolvers.get(config)
    if built is not None and built[0] > now:
        return built[1], built[2]
    error: str | None = None
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
            error = f"no resolver configuration: {exc}"
    resolver.timeout = config.timeout
    resolver.lifetime = config.timeout
    resolver.retry_servfail = False
    resolver.cache = None
    if len(_resolvers) > 16:  # settings reloaded many times: forget the old ones
        _resolvers.clear()
    _resolvers[config] = (now + _RESOLVER_SECONDS, resolver, error)
    return resolver, error


class Resolver:
    """A thin, thread-safe wrapper around ``dns.resolver.Resolver``."""

    def __init__(self, config: DnsConfig, cache: DnsCache | None = None) -> None:
        self.config = config
        self._cache = cache
        self._resolver, self._error = _dns_resolver(config)

    def query(self, name: str, rdtype: str) -> list[dns.rdata.Rdata]:
        """Records of ``rdtype`` at ``name`` ([] for NXDOMAIN / no data).

        Raises DnsTempError when the answer could not be had.
        """
        if self._error is not None:
            raise DnsTempError(self._error)
        key: _Key = (self.config.nameservers, self.config.port, name.lower(), rdtype)
        if self._cache is not None:
            cached = self._cache.get(key)
            if cached is not None:
                return list(cached)  # the caller's own list
        records, ttl = self._resolve(name, rdtype)
        if self._cache is not None:
            self._cache.put(key, ttl, records)
        return records

    def _resolve(self, name: str, rdtype: str) -> tuple[list[dns.rdata.Rdata], float]:
        """The records and how long they may be cached."""
        try:
            qname = dns.name.from_text(name)
        except (dns.exception.DNSException, ValueError, UnicodeError):
            return [], 0.0
        try:
            answer = self._resolver.resolve(
                qname,
                dns.rdatatype.from_text(rdtype),
                raise_on_no_answer=False,
                search=False,
                lifetime=self.config.timeout,
            )
        except dns.resolver.NXDOMAIN as exc:
            responses = list(exc.responses().values())  # type: ignore[no-untyped-call]
            return [], _negative_ttl(responses[0] if responses else None)
        except dns.resolver.NoAnswer:  # pragma: no cover - raise_on_no_answer=False
            return [], 0.0
        except dns.resolver.YXDOMAIN:
            return [], 0.0
        except dns.exception.Timeout as exc:
            raise DnsTempError(f"DNS timeout for {name} {rdtype}") from exc
        except dns.resolver.NoNameservers as exc:
            raise DnsTempError(f"DNS server failure for {name} {rdtype}") from exc
        except dns.exception.DNSException as exc:
            raise DnsTempError(f"DNS error for {name} {rdtype}: {type(exc).__name__}") from exc
        except OSError as exc:
            raise DnsTempError(f"DNS network error for {name} {rdtype}") from exc
        if answer.rrset is None:
            return [], _negative_ttl(answer.response)
        return list(answer.rrset), float(answer.rrset.ttl)

    def txt(self, name: str) -> list[bytes]:
        """TXT records at ``name``, each record's strings joined."""
        out: list[bytes] = []
        for rdata in self.query(name, "TXT"):
            strings = getattr(rdata, "strings", ())
            out.append(b"".join(strings))
        return out


class NotCached(Exception):
    """A look-up the DNS cache cannot answer (CacheOnlyResolver)."""


class CacheOnlyResolver(Resolver):
    """The resolver's cache and nothing else: a check run with it needs no thread hop.

    A look-up the cache cannot answer raises NotCached and is remembered in `missed`:
    pyspf swallows some exceptions (the exp= explanation), so a result reached after a miss
    is not the real one and must be computed again with the real resolver.
    """

    def __init__(self, source: Resolver) -> None:  # no dns.resolver: nothing goes out
        self.config = source.config
        self._cache = source._cache
        self._error = source._error
        self.missed = False

    def _resolve(self, name: str, rdtype: str) -> tuple[list[dns.rdata.Rdata], float]:
        self.missed = True
        raise NotCached(f"{name} {rdtype}")
