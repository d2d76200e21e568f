"""The I/O half: gather SPF, DKIM, ARC and DMARC evidence for one message."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

from capture_server.client_address import address_in

from .checks import (
    NO_ARC,
    NO_DKIM,
    check_arc,
    check_dkim,
    check_spf,
    signature_headers,
    spf_identity,
)
from .dmarc import DmarcLookup, domains_aligned, evaluate_dmarc, fetch_dmarc
from .dnsclient import (
    CacheOnlyResolver,
    DnsCache,
    DnsConfig,
    NotCached,
    Resolver,
    to_ascii_domain,
)
from .results import AuthenticationResults, MethodResult, parse_authentication_results
from .structure import RawHeader, parse_from, split_headers

__all__ = [
    "find_trusted_authentication_results",
    "results_from_upstream",
    "strip_untrusted_authentication_results",
    "verify_message",
]

_AR_NAME = "authentication-results"
_UPSTREAM_P_RE = re.compile(r"\bp=(none|quarantine|reject)\b", re.IGNORECASE)


T = TypeVar("T")


async def _ready(value: T) -> T:
    return value


def _cached_or_threaded(check: Callable[[Resolver], T], resolver: Resolver) -> Awaitable[T]:
    """The check on the event loop when the DNS cache answers all its look-ups (the sender's
    SPF and DMARC records nearly always are: no thread hop, which costs more than the check),
    else in a worker thread with the real resolver."""
    if resolver._cache is not None:
        cached = CacheOnlyResolver(resolver)
        try:
            found = check(cached)
        except NotCached:
            pass
        else:
            if not cached.missed:
                return _ready(found)
    return asyncio.to_thread(check, resolver)


def _ip_in(client_ip: str, networks: Iterable[str]) -> bool:
    return address_in(client_ip.strip().strip("[]"), networks)


def _unfold(value: str) -> str:
    return " ".join(part.strip() for part in value.split("\n")).strip()


def find_trusted_authentication_results(
    headers: Iterable[RawHeader], trusted_authserv_ids: frozenset[str]
) -> tuple[str, str] | None:
    """(authserv-id, value) of the topmost Authentication-Results whose authserv-id is
    trusted.  Lower ones are never used: the trusted relay is expected to have removed
    any copy of its own authserv-id that arrived from outside (RFC 8601 §5)."""
    wanted = {a.lower() for a in trusted_authserv_ids}
    for h in headers:
        if h.name.lower() != _AR_NAME:
            continue
        value = _unfold(h.value)
        parsed = parse_authentication_results(value)
        if parsed is not None and parsed.authserv_id in wanted:
            return parsed.authserv_id, value
        if parsed is None:
            first = value.split(";", 1)[0].split()
            if first and first[0].lower() in wanted:
                # The topmost trusted header is unusable: never fall through to a lower
                # (possibly forged) copy; verify locally instead.
                return None
    return None


def _domain_of(value: str | None) -> str | None:
    if not value:
        return None
    return to_ascii_domain(value.rsplit("@", 1)[-1])


def results_from_upstream(
    value: str, *, from_address: str | None, from_domain: str | None
) -> AuthenticationResults | None:
    """AuthenticationResults from a trusted relay's header value.  Pure."""
    parsed = parse_authentication_results(value)
    if parsed is None:
        return None
    methods: list[MethodResult] = []
    upstream_dmarc: MethodResult | None = None
    upstream_policy: str | None = None
    spf_result: MethodResult | None = None
    dkims: list[MethodResult] = []
    for clause in parsed.clauses:
        detail = "; ".join(c for c in (clause.reason, *clause.comments) if c)[:160]
        if clause.method == "spf":
            mailfrom = clause.prop("smtp.mailfrom")
            identity = "mailfrom" if mailfrom else "helo"
            domain = _domain_of(mailfrom or clause.prop("smtp.helo"))
            spf_result = MethodResult("spf", clause.result, domain, detail, identity=identity)
            methods.append(spf_result)
        elif clause.method == "dkim":
            domain = _domain_of(clause.prop("header.d") or clause.prop("header.i"))
            m = MethodResult("dkim", clause.result, domain, detail, clause.prop("header.s"))
            dkims.append(m)
            methods.append(m)
        elif clause.method == "dmarc":
            domain = _domain_of(clause.prop("header.from"))
            upstream_dmarc = MethodResult("dmarc", clause.result, domain, detail)
            for comment in clause.comments:
                found = _UPSTREAM_P_RE.search(comment)
                if found:
                    upstream_policy = found.group(1).lower()
            methods.append(upstream_dmarc)
        elif clause.method == "arc":
            methods.append(MethodResult("arc", clause.result, None, detail))
    notes: list[str] = []
    if upstream_dmarc is not None:
        same_domain = upstream_dmarc.domain is not None and upstream_dmarc.domain == from_domain
        aligned = upstream_dmarc.result == "pass" and same_domain
        if upstream_dmarc.result == "pass" and not same_domain:
            notes.append("upstream dmarc=pass was for another From domain")
        temporary = upstream_dmarc.result == "temperror"
    else:
        # No DMARC verdict upstream: relaxed alignment of its SPF/DKIM passes.
        outcome = evaluate_dmarc(from_domain, DmarcLookup(None, None), spf_result, dkims)
        aligned = outcome.aligned
        temporary = outcome.temporary_error
        methods.append(outcome.result)
        notes.append("dmarc computed locally from upstream spf/dkim")
    return AuthenticationResults(
        authserv_id=parsed.authserv_id,
        methods=tuple(methods),
        from_domain=from_domain,
        dmarc_policy=upstream_policy,
        aligned=aligned,
        temporary_error=temporary,
        source="trusted_upstream",
        from_address=from_address,
        notes=tuple(notes),
    )


async def verify_message(
    raw: bytes,
    *,
    mail_from: str,
    helo: str,
    client_ip: str,
    authserv_id: str,
    dns: DnsConfig,
    trusted_relays: frozenset[str] = frozenset(),
    trusted_authserv_ids: frozenset[str] = frozenset(),
    cache: DnsCache | None = None,
) -> AuthenticationResults:
    """Verify SPF, every DKIM signature, ARC and DMARC for one message.

    When ``client_ip`` is a trusted relay (an address or network in ``trusted_relays``)
    and the message's topmost Authentication-Results with a trusted authserv-id is
    found, its results are used instead (source ``trusted_upstream``).  Any other
    Authentication-Results header is ignored.  DNS runs in worker threads.
    """
    sender = parse_from(raw)
    from_address = sender.address if sender else None
    from_domain = sender.domain if sender else None

    if trusted_authserv_ids and _ip_in(client_ip, trusted_relays):
        headers, _ = split_headers(raw)
        found = find_trusted_authentication_results(headers, trusted_authserv_ids)
        if found is not None:
            upstream = results_from_upstream(
                found[1], from_address=from_address, from_domain=from_domain
            )
            if upstream is not None:
                return upstream

    resolver = Resolver(dns, cache)

    def spf(using: Resolver) -> MethodResult:
        return check_spf(using, mail_from=mail_from, helo=helo, client_ip=client_ip)

    spf_task = _cached_or_threaded(spf, resolver)
    # dkimpy parses the whole message even when nothing is signed: skip it, and the thread hop.
    signed, sealed = signature_headers(raw)
    dkim_task = asyncio.to_thread(check_dkim, raw, resolver) if signed else _ready(NO_DKIM)
    arc_task = asyncio.to_thread(check_arc, raw, resolver) if sealed else _ready(NO_ARC)
    if from_domain is not None:
        dmarc_task = _cached_or_threaded(lambda using: fetch_dmarc(using, from_domain), resolver)
        dmarc_lookup = await asyncio.gather(spf_task, dkim_task, arc_task, dmarc_task)
        spf_res, dkim_res, arc_res, lookup = dmarc_lookup
    else:
        spf_res, dkim_res, arc_res = await asyncio.gather(spf_task, dkim_task, arc_task)
        lookup = DmarcLookup(None, None)

    outcome = evaluate_dmarc(from_domain, lookup, spf_res, dkim_res)
    notes: list[str] = []
    if arc_res.result == "pass" and not outcome.aligned:
        notes.append("valid ARC chain present but not used to override DMARC")
    identity, _ = spf_identity(mail_from, helo)
    if (
        spf_res.result == "pass"
        and identity == "mailfrom"
        and from_domain
        and spf_res.domain
        and not domains_aligned(spf_res.domain, from_domain, "r")
    ):
        notes.append("spf passed for an unaligned MAIL FROM domain")
    return AuthenticationResults(
        authserv_id=authserv_id,
        methods=(spf_res, *dkim_res, outcome.result, arc_res),
        from_domain=from_domain,
        dmarc_policy=outcome.policy,
        aligned=outcome.aligned,
        temporary_error=outcome.temporary_error,
        source="local",
        from_address=from_address,
        notes=tuple(notes),
    )


def strip_untrusted_authentication_results(
    raw: bytes, trusted_authserv_ids: frozenset[str]
) -> bytes:
    """``raw`` without the Authentication-Results fields whose authserv-id is not trusted
    (unparseable ones included).  The body and every other byte are left untouched."""
    wanted = {a.lower() for a in trusted_authserv_ids}
    sep = -1
    for marker in (b"\r\n\r\n", b"\n\n"):
        idx = raw.find(marker)
        if idx != -1 and (sep == -1 or idx < sep):
            sep = idx
    head, tail = (raw, b"") if sep == -1 else (raw[:sep], raw[sep:])
    lines = head.splitlines(keepends=True)
    out: list[bytes] = []
    dropping = False
    i = 0
    while i < len(lines):
        line = lines[i]
        if line[:1] in (b" ", b"\t"):
            if not dropping:
                out.append(line)
            i += 1
            continue
        dropping = False
        name, colon, _rest = line.partition(b":")
        if colon and name.strip().lower() == b"authentication-results":
            field = [line]
            j = i + 1
            while j < len(lines) and lines[j][:1] in (b" ", b"\t"):
                field.append(lines[j])
                j += 1
            value = b"".join(field).partition(b":")[2].decode("utf-8", errors="replace")
            parsed = parse_authentication_results(_unfold(value.replace("\r", "")))
            if parsed is None or parsed.authserv_id not in wanted:
                dropping = True
                i += 1
                continue
        out.append(line)
        i += 1
    return b"".join(out) + tail
