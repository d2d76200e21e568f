"""Readiness report for one domain: ``capture-server auth check DOMAIN``."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import re

from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key

from .dmarc import effective_policy, fetch_dmarc
from .dnsclient import DnsConfig, DnsTempError, Resolver, to_ascii_domain

__all__ = ["COMMON_DKIM_SELECTORS", "check_domain", "parse_spf_record"]

COMMON_DKIM_SELECTORS = (
    "default",
    "google",
    "selector1",
    "selector2",
    "k1",
    "s1",
    "mail",
    "dkim",
)
_SPF_MECH_RE = re.compile(
    r"^([+\-~?]?)(all|include|a|mx|ptr|ip4|ip6|exists)(?:([:/])(.*))?$", re.IGNORECASE
)
_SPF_MOD_RE = re.compile(r"^([a-z][a-z0-9_.\-]*)=(.*)$", re.IGNORECASE)
_LOOKUP_TERMS = {"include", "a", "mx", "ptr", "exists", "redirect"}


def parse_spf_record(record: str) -> dict[str, object]:
    """Syntax check of one SPF record (top level only; includes are not followed)."""
    terms = record.split()
    problems: list[str] = []
    mechanisms: list[str] = []
    modifiers: dict[str, str] = {}
    lookups = 0
    if not terms or terms[0].lower() != "v=spf1":
        return {"valid": False, "mechanisms": [], "modifiers": {}, "problems": ["not v=spf1"]}
    for term in terms[1:]:
        mech = _SPF_MECH_RE.match(term)
        if mech:
            name = mech.group(2).lower()
            arg = mech.group(4) or ""
            if name in ("ip4", "ip6"):
                try:
                    net = ipaddress.ip_network(arg, strict=False)
                    if (name == "ip4") != (net.version == 4):
                        raise ValueError(arg)
                except ValueError:
                    problems.append(f"invalid address in {term}")
            if name in ("include", "exists") and not arg:
                problems.append(f"{name} needs a domain")
            if name == "all" and mech.group(1) in ("", "+"):
                problems.append("+all authorises every host on the internet")
            if name == "ptr":
                problems.append("ptr is deprecated (RFC 7208 §5.5)")
            lookups += name in _LOOKUP_TERMS
            mechanisms.append(term)
            continue
        mod = _SPF_MOD_RE.match(term)
        if mod:
            key = mod.group(1).lower()
            if key in modifiers and key in ("redirect", "exp"):
                problems.append(f"duplicate {key}=")
            modifiers[key] = mod.group(2)
            lookups += key in _LOOKUP_TERMS
            continue
        problems.append(f"unknown term {term!r}")
    if lookups > 10:
        problems.append(f"{lookups} DNS-querying terms at top level (limit 10)")
    fatal = [
        p for p in problems if p.startswith(("invalid", "unknown", "duplicate")) or "needs" in p
    ]
    return {
        "valid": not fatal,
        "mechanisms": mechanisms,
        "modifiers": modifiers,
        "dns_lookup_terms": lookups,
        "problems": problems,
    }


def _dkim_key(record: bytes) -> dict[str, object]:
    tags: dict[str, str] = {}
    for part in record.decode("utf-8", errors="replace").split(";"):
        if "=" in part:
            k, v = part.split("=", 1)
            tags.setdefault(k.strip().lower(), "".join(v.split()))
    key_type = tags.get("k", "rsa").lower()
    out: dict[str, object] = {"key_type": key_type, "revoked": False, "valid": False}
    p = tags.get("p")
    if p is None:
        out["problem"] = "no p= tag"
        return out
    if not p:
        out["revoked"] = True
        out["problem"] = "key revoked (empty p=)"
        return out
    try:
        der = base64.b64decode(p, validate=True)
        if key_type == "ed25519":
            out["valid"] = len(der) == 32
            out["bits"] = 256
        else:
            key = load_der_public_key(der)
            if isinstance(key, rsa.RSAPublicKey):
                out["bits"] = key.key_size
                out["valid"] = key.key_size >= 1024
                if key.key_size < 1024:
                    out["problem"] = "RSA key shorter than 1024 bits"
            else:
                out["problem"] = "p= is not an RSA key"
    except (ValueError, TypeError):
        out["problem"] = "p= does not decode"
    return out


async def check_domain(domain: str, dns: DnsConfig) -> dict[str, object]:
    """SPF, DMARC, common DKIM selectors and MX for ``domain``; JSON-ready.

    Keys: ``domain``, ``ready``, ``spf``, ``dmarc``, ``dkim``, ``mx``, ``problems``.
    ``ready`` means the domain can pass enforce mode at all: a DMARC record is published
    and either a valid SPF record or a DKIM key at a common selector was found (a key at
    a custom selector is not discoverable, so ``problems`` may list DKIM needlessly).
    """
    name = to_ascii_domain(domain)
    if name is None:
        return {"domain": domain, "ready": False, "problems": ["invalid domain name"]}
    resolver = Resolver(dns)
    problems: list[str] = []

    async def txt(qname: str) -> list[bytes] | None:
        try:
            return await asyncio.to_thread(resolver.txt, qname)
        except DnsTempError:
            return None

    async def mx() -> list[str] | None:
        try:
            rdatas = await asyncio.to_thread(resolver.query, name, "MX")
        except DnsTempError:
            return None
        return [
            f"{rd.preference} {rd.exchange.to_text(omit_final_dot=True)}"  # type: ignore[attr-defined]
            for rd in rdatas
        ]

    selectors_task = asyncio.gather(
        *(txt(f"{sel}._domainkey.{name}") for sel in COMMON_DKIM_SELECTORS)
    )
    spf_txt, dmarc_lookup, mx_hosts, selector_txts = await asyncio.gather(
        txt(name), asyncio.to_thread(fetch_dmarc, resolver, name), mx(), selectors_task
    )

    spf: dict[str, object] = {"present": False}
    if spf_txt is None:
        spf["error"] = "DNS temporary error"
        problems.append("SPF: DNS temporary error")
    else:
        records = [
            r.decode("utf-8", errors="replace")
            for r in spf_txt
            if r.lower() == b"v=spf1" or r.lower().startswith(b"v=spf1 ")
        ]
        if len(records) > 1:
            spf.update(present=True, valid=False, records=records)
            problems.append("SPF: more than one v=spf1 record (permerror)")
        elif records:
            spf.update(present=True, record=records[0], **parse_spf_record(records[0]))
            if not spf.get("valid"):
                problems.append("SPF: record does not parse")
        else:
            problems.append("SPF: no record")

    dmarc: dict[str, object] = {"present": dmarc_lookup.record is not None}
    if dmarc_lookup.temp_error:
        dmarc["error"] = "DNS temporary error"
        problems.append("DMARC: DNS temporary error")
    elif dmarc_lookup.record is None:
        if dmarc_lookup.error:
            dmarc["error"] = dmarc_lookup.error
        problems.append("DMARC: no usable record")
    else:
        r = dmarc_lookup.record
        dmarc.update(
            record=r.raw,
            found_at=f"_dmarc.{dmarc_lookup.found_at}",
            policy=r.p,
            subdomain_policy=r.sp,
            effective_policy=effective_policy(dmarc_lookup, name),
            pct=r.pct,
            adkim=r.adkim,
            aspf=r.aspf,
        )
        if r.p == "none":
            problems.append("DMARC: p=none (monitoring only)")

    found: list[dict[str, object]] = []
    for sel, key_records in zip(COMMON_DKIM_SELECTORS, selector_txts, strict=True):
        if not key_records:
            continue
        key = [rec for rec in key_records if b"p=" in rec]
        if key:
            found.append({"selector": sel, **_dkim_key(key[0])})
    dkim: dict[str, object] = {
        "selectors_tried": list(COMMON_DKIM_SELECTORS),
        "found": found,
        "note": "only common selectors are tried; a custom selector may still exist",
    }
    if not any(f.get("valid") for f in found):
        problems.append("DKIM: no key found at a common selector")

    mx_report: dict[str, object]
    if mx_hosts is None:
        mx_report = {"present": False, "error": "DNS temporary error"}
        problems.append("MX: DNS temporary error")
    else:
        mx_report = {"present": bool(mx_hosts), "hosts": mx_hosts}
        if not mx_hosts:
            problems.append("MX: none")

    ready = bool(spf.get("valid")) or any(bool(f.get("valid")) for f in found)
    return {
        "domain": name,
        "ready": ready and dmarc_lookup.record is not None,
        "spf": spf,
        "dmarc": dmarc,
        "dkim": dkim,
        "mx": mx_report,
        "problems": problems,
    }
