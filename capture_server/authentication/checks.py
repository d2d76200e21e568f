"""Blocking SPF (pyspf), DKIM and ARC (dkimpy) checks backed by our DNS resolver.

Run these in a worker thread.  Each returns :class:`MethodResult` values; none raises.
"""

from __future__ import annotations

import ipaddress
import re
import time
from typing import Any

import dkim
import spf
from dkim.canonicalization import CanonicalizationPolicy
from dkim.util import parse_tag_value

from .dkim_stream import AVAILABLE as STREAMING_AVAILABLE
from .dkim_stream import StreamingARC, StreamingDKIM, header_section
from .dnsclient import DnsTempError, Resolver, to_ascii_domain
from .results import MethodResult

__all__ = [
    "NO_ARC",
    "NO_DKIM",
    "check_arc",
    "check_dkim",
    "check_spf",
    "signature_headers",
    "spf_identity",
]

MAX_DKIM_SIGNATURES = 8
# Above this size the DKIM body hash is streamed from the received bytes (dkim_stream.py)
# instead of dkimpy's whole-body canonicalisation (~4.6x the message in memory).
DKIM_STREAM_THRESHOLD = 1 << 20
# The same for the ARC-Message-Signature body hash (dkimpy: ~3.7x the message in memory).
ARC_STREAM_THRESHOLD = 1 << 20
MAX_ARC_SETS = 10  # RFC 8617 allows 50; real chains are short, and each set costs 2 look-ups
SPF_TOTAL_SECONDS = 20.0  # RFC 7208 §4.6.4 suggests at least 20 s for the whole check
_DETAIL_MAX = 160


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _DETAIL_MAX else text[: _DETAIL_MAX - 1] + "…"


# ------------------------------------------------------------------------------ SPF


def spf_identity(mail_from: str, helo: str) -> tuple[str, str | None]:
    """("mailfrom" | "helo", domain) checked by SPF (RFC 7208 §2.4)."""
    addr = mail_from.strip().strip("<>").strip()
    if addr and "@" in addr:
        return "mailfrom", to_ascii_domain(addr.rsplit("@", 1)[1])
    return "helo", to_ascii_domain(helo)


class _SpfQuery(spf.query):  # type: ignore[misc]
    """pyspf query whose every DNS look-up goes through our resolver.

    pyspf calls ``self.dns(name, qtype)`` for everything (A, AAAA, MX, PTR, TXT/SPF);
    overriding it keeps pyspf's mechanism/lookup-limit logic and avoids the module-global
    ``spf.DNSLookup`` (which would not be safe with concurrent checks).
    """

    def __init__(self, *args: Any, resolver: Resolver, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._resolver = resolver
        self._deadline = time.monotonic() + SPF_TOTAL_SECONDS

    def dns(
        self,
        name: Any,
        qtype: str,
        cnames: Any = None,
        ignore_void: bool = False,
    ) -> list[Any]:
        if not name:
            raise spf.PermError("empty DNS name")
        qname = str(name).rstrip(".").lower()
        if not all(0 < len(label) < 64 for label in qname.split(".")):
            return []
        cached: list[Any] = self.cache.get((qname, qtype), [])
        if cached:
            return cached
        if time.monotonic() > self._deadline:
            raise spf.TempError("DNS: SPF check took too long")
        rdtype = "TXT" if qtype == "SPF" else qtype
        try:
            rdatas = self._resolver.query(qname, rdtype)
        except DnsTempError as exc:
            raise spf.TempError(f"DNS {exc}") from exc
        result: list[Any] = []
        for rd in rdatas:
            if qtype in ("A", "AAAA"):
                result.append(rd.address)  # type: ignore[attr-defined]
            elif qtype == "MX":
                exchange = rd.exchange.to_text(omit_final_dot=True)  # type: ignore[attr-defined]
                result.append((rd.preference, exchange))  # type: ignore[attr-defined]
            elif qtype == "PTR":
                result.append(rd.target.to_text(omit_final_dot=True))  # type: ignore[attr-defined]
            elif qtype in ("TXT", "SPF"):
                result.append(list(rd.strings))  # type: ignore[attr-defined]
        if result:
            self.cache[(qname, qtype)] = result
        elif not ignore_void:
            self.void_lookups += 1
            if self.void_lookups > spf.MAX_VOID_LOOKUPS:
                raise spf.PermError(f"Void lookup limit of {spf.MAX_VOID_LOOKUPS} exceeded")
        return result


def check_spf(resolver: Resolver, *, mail_from: str, helo: str, client_ip: str) -> MethodResult:
    identity, domain = spf_identity(mail_from, helo)
    if domain is None:
        return MethodResult("spf", "none", None, "no domain to check", identity=identity)
    try:
        ipaddress.ip_address(client_ip.strip("[]"))
    except ValueError:
        return MethodResult("spf", "permerror", domain, "invalid client IP", identity=identity)
    sender = mail_from.strip().strip("<>").strip() if identity == "mailfrom" else ""
    try:
        q = _SpfQuery(
            i=client_ip.strip("[]"),
            s=sender,
            h=helo or domain,
            resolver=resolver,
            timeout=resolver.config.timeout,
        )
        if identity == "mailfrom":
            q.d = q.o = domain
        result, _code, explanation = q.check()
    except Exception as exc:  # pyspf on hostile input
        return MethodResult(
            "spf", "permerror", domain, _short(f"SPF error: {exc}"), identity=identity
        )
    result = str(result).lower()
    if result == "ambiguous":  # pragma: no cover - only in pyspf's "harsh" mode
        result = "neutral"
    return MethodResult(
        "spf", result, domain, _short(str(explanation) or result), identity=identity
    )


# ----------------------------------------------------------------------------- DKIM


class _KeyLookup:
    """A dkimpy ``dnsfunc`` that remembers what happened."""

    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        self.temp_error = False
        self.missing = False

    def __call__(self, name: bytes, timeout: float = 5) -> bytes | None:
        try:
            qname = name.decode("ascii")
        except UnicodeDecodeError:
            self.missing = True
            return None
        try:
            records = self.resolver.txt(qname)
        except DnsTempError as exc:
            self.temp_error = True
            raise dkim.DnsTimeoutError(str(exc)) from exc
        if not records:
            self.missing = True
            return None
        keys = [r for r in records if b"p=" in r]
        return (keys or records)[0]


def _signature_tags(value: bytes) -> dict[bytes, bytes]:
    try:
        tags: dict[bytes, bytes] = parse_tag_value(re.sub(rb"\r?\n[ \t]", b" ", value))
        return tags
    except Exception:
        return {}


def _text(value: bytes | None) -> str | None:
    if value is None:
        return None
    return "".join(ch for ch in value.decode("utf-8", errors="replace") if not ch.isspace())


def _verify_one(raw: bytes, idx: int, tags: dict[bytes, bytes], resolver: Resolver) -> MethodResult:
    d_tag = _text(tags.get(b"d"))
    domain = to_ascii_domain(d_tag) if d_tag else None
    domain = domain or d_tag
    selector = _text(tags.get(b"s"))

    def res(result: str, detail: str) -> MethodResult:
        return MethodResult("dkim", result, domain, _short(detail), selector)

    if not tags:
        return res("permerror", "unparseable signature")
    signed = [h.strip().lower() for h in tags.get(b"h", b"").split(b":")]
    if b"from" not in signed:
        return res("permerror", "From is not signed")
    if tags.get(b"a", b"").strip().lower() == b"rsa-sha1":
        return res("permerror", "rsa-sha1 is not accepted (RFC 8301)")
    lookup = _KeyLookup(resolver)
    try:
        if len(raw) > DKIM_STREAM_THRESHOLD and STREAMING_AVAILABLE:
            verifier = StreamingDKIM(raw, minkey=1024, timeout=resolver.config.timeout)
        else:
            verifier = dkim.DKIM(raw, minkey=1024, timeout=resolver.config.timeout)
        ok = verifier.verify(idx=idx, dnsfunc=lookup)
    except dkim.ValidationError as exc:
        message = str(exc)
        if message.startswith("body hash mismatch"):
            return res("fail", "body hash mismatch")
        return res("fail", message)
    except dkim.DKIMException as exc:
        if lookup.temp_error:
            return res("temperror", "key look-up failed")
        return res("permerror", str(exc) or type(exc).__name__)
    except Exception as exc:  # dkimpy on hostile input
        return res("permerror", f"unverifiable: {type(exc).__name__}")
    if lookup.temp_error:
        return res("temperror", "key look-up failed")
    if lookup.missing:
        return res("permerror", "no key for signature")
    if not ok:
        return res("fail", "signature did not verify")
    if b"l" in tags:
        try:
            signed_len = int(tags[b"l"].strip())
            policy = CanonicalizationPolicy.from_c_value(tags.get(b"c", b"simple/simple").strip())
            if isinstance(verifier, StreamingDKIM):
                body_len = verifier.canonical_body_length(policy.body_algorithm)
            else:
                body_len = len(policy.canonicalize_body(verifier.body))
        except Exception:
            return res("policy", "unusable l= tag")
        if signed_len < body_len:
            return res("policy", f"l= covers {signed_len} of {body_len} body bytes")
    return res("pass", "signature verified")


NO_DKIM = (MethodResult("dkim", "none", None, "no signature"),)
NO_ARC = MethodResult("arc", "none", None, "no ARC sets")
_ARC_NAMES = (b"\narc-seal", b"\narc-message-signature", b"\narc-authentication-results")


def signature_headers(raw: bytes) -> tuple[bool, bool]:
    """(may carry a DKIM-Signature, may carry ARC headers): a cheap look at the header block.

    Errs towards True: whatever dkimpy would take for a header starts a line before the
    first empty one, so False means check_dkim/check_arc would answer NO_DKIM/NO_ARC.
    """
    # The first "\n\n" or "\n\r\n", whichever comes first, without scanning a big message to
    # its end for the one it does not have.
    crlf = raw.find(b"\n\r\n")
    lf = raw.find(b"\n\n", 0, crlf + 1 if crlf >= 0 else len(raw))
    end = lf if lf >= 0 else crlf
    block = b"\n" + raw[: end + 1 if end >= 0 else len(raw)].lower()
    return b"\ndkim-signature" in block, any(name in block for name in _ARC_NAMES)


def check_dkim(raw: bytes, resolver: Resolver) -> tuple[MethodResult, ...]:
    """Verify every DKIM-Signature (up to MAX_DKIM_SIGNATURES), topmost first."""
    try:
        # Only the header fields are used: for a big message, parse the header section only.
        parser = dkim.DKIM(header_section(raw) if len(raw) > DKIM_STREAM_THRESHOLD else raw)
        sig_values = [v for k, v in parser.headers if k.lower() == b"dkim-signature"]
    except Exception:
        return (MethodResult("dkim", "permerror", None, "message could not be parsed"),)
    if not sig_values:
        return NO_DKIM
    out: list[MethodResult] = []
    for idx, value in enumerate(sig_values[:MAX_DKIM_SIGNATURES]):
        out.append(_verify_one(raw, idx, _signature_tags(value), resolver))
    return tuple(out)


# ------------------------------------------------------------------------------ ARC


def check_arc(raw: bytes, resolver: Resolver) -> MethodResult:
    """Validate the ARC chain.  Informational only: ARC never grants a pass here."""
    lookup = _KeyLookup(resolver)
    try:
        if len(raw) > ARC_STREAM_THRESHOLD and STREAMING_AVAILABLE:
            arc = StreamingARC(raw, minkey=1024, timeout=resolver.config.timeout)
        else:
            arc = dkim.ARC(raw, minkey=1024, timeout=resolver.config.timeout)
        seals = sum(1 for k, _v in arc.headers if k.lower() == b"arc-seal")
        if seals > MAX_ARC_SETS:
            return MethodResult("arc", "fail", None, f"{seals} ARC sets (limit {MAX_ARC_SETS})")
        cv, results, reason = arc.verify(dnsfunc=lookup)
    except dkim.DKIMException as exc:
        if lookup.temp_error:
            return MethodResult("arc", "temperror", None, "key look-up failed")
        return MethodResult("arc", "fail", None, _short(str(exc) or "invalid ARC set"))
    except Exception as exc:
        return MethodResult("arc", "fail", None, f"unverifiable: {type(exc).__name__}")
    domain = None
    if results:
        raw_domain = results[0].get("as-domain")
        if isinstance(raw_domain, bytes):
            domain = _text(raw_domain)
    if cv == dkim.CV_None:
        return NO_ARC
    if lookup.temp_error:
        return MethodResult("arc", "temperror", domain, "key look-up failed")
    if cv == dkim.CV_Pass:
        sealer = f"; sealed by {domain}" if domain else ""
        return MethodResult("arc", "pass", domain, f"chain of {len(results)} verified{sealer}")
    return MethodResult("arc", "fail", domain, _short(str(reason) or "chain did not verify"))
