"""DMARC (RFC 7489): record parsing, identifier alignment and the verdict.  Pure, except
:func:`fetch_dmarc`, which blocks on DNS and is run in a worker thread.

Choices (see also the package docstring):

* Alignment is computed even when the From domain publishes no record, with the RFC's
  defaults (relaxed SPF and DKIM alignment); ``aligned`` therefore always answers "did
  SPF or DKIM prove the From domain?".
* ``pct`` is applied deterministically: ``pct=0`` downgrades the policy one step
  (reject → quarantine → none, RFC 7489 §6.6.4); any other value keeps the published
  policy.  There is no random sampling: the same message always gets the same answer.
* When a record or an SPF/DKIM look-up failed temporarily, the verdict is computed for
  every outcome the missing answer could have had: if they agree, that is the verdict;
  otherwise the result is ``temperror``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import product

from .dnsclient import DnsTempError, Resolver, to_ascii_domain
from .psl import organizational_domain
from .results import MethodResult

__all__ = [
    "DmarcLookup",
    "DmarcOutcome",
    "DmarcRecord",
    "domains_aligned",
    "evaluate_dmarc",
    "fetch_dmarc",
    "parse_dmarc_record",
]

_POLICIES = ("none", "quarantine", "reject")


@dataclass(frozen=True)
class DmarcRecord:
    p: str
    sp: str | None
    pct: int
    adkim: str
    aspf: str
    raw: str


@dataclass(frozen=True)
class DmarcLookup:
    record: DmarcRecord | None
    found_at: str | None
    temp_error: bool = False
    error: str = ""


@dataclass(frozen=True)
class DmarcOutcome:
    result: MethodResult
    aligned: bool
    policy: str | None
    temporary_error: bool


def _tags(text: str) -> list[tuple[str, str]] | None:
    tags: list[tuple[str, str]] = []
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            return None
        key, value = part.split("=", 1)
        tags.append((key.strip().lower(), value.strip()))
    return tags


def is_dmarc_record(text: str) -> bool:
    tags = _tags(text)
    return bool(tags) and tags is not None and tags[0] == ("v", "DMARC1")


def parse_dmarc_record(text: str) -> DmarcRecord | None:
    """A DMARC record, or None when ``text`` is not a usable one (RFC 7489 §6.6.3)."""
    tags = _tags(text)
    if not tags or tags[0] != ("v", "DMARC1"):
        return None
    values: dict[str, str] = {}
    for key, value in tags[1:]:
        values.setdefault(key, value)
    p = values.get("p", "").lower()
    if p not in _POLICIES:
        # A record with rua= but a missing/invalid p= is treated as p=none.
        if "rua" in values:
            p = "none"
        else:
            return None
    sp_raw = values.get("sp", "").lower()
    sp = sp_raw if sp_raw in _POLICIES else None
    try:
        pct = int(values.get("pct", "100"))
    except ValueError:
        pct = 100
    if not 0 <= pct <= 100:
        pct = 100
    adkim = "s" if values.get("adkim", "r").lower() == "s" else "r"
    aspf = "s" if values.get("aspf", "r").lower() == "s" else "r"
    return DmarcRecord(p=p, sp=sp, pct=pct, adkim=adkim, aspf=aspf, raw=text)


def _lookup_one(resolver: Resolver, domain: str) -> tuple[list[str], bool]:
    try:
        records = resolver.txt(f"_dmarc.{domain}")
    except DnsTempError:
        return [], True
    texts = [r.decode("utf-8", errors="replace") for r in records]
    return [t for t in texts if is_dmarc_record(t)], False


def fetch_dmarc(resolver: Resolver, from_domain: str) -> DmarcLookup:
    """The record for ``from_domain``, else for its organisational domain.  Blocking."""
    for domain in dict.fromkeys([from_domain, organizational_domain(from_domain)]):
        found, temp = _lookup_one(resolver, domain)
        if temp:
            return DmarcLookup(None, None, temp_error=True, error=f"DNS error at _dmarc.{domain}")
        if len(found) > 1:
            return DmarcLookup(None, domain, error="more than one DMARC record")
        if len(found) == 1:
            record = parse_dmarc_record(found[0])
            if record is not None:
                return DmarcLookup(record, domain)
            return DmarcLookup(None, domain, error="invalid DMARC record")
    return DmarcLookup(None, None)


def domains_aligned(
    identifier: str,
    from_domain: str,
    mode: str,
    org: Callable[[str], str] = organizational_domain,
) -> bool:
    """Strict: the same domain.  Relaxed: the same organisational domain."""
    a = to_ascii_domain(identifier)
    b = to_ascii_domain(from_domain)
    if a is None or b is None:
        return False
    if a == b:
        return True
    return mode == "r" and org(a) == org(b)


def effective_policy(lookup: DmarcLookup, from_domain: str) -> str | None:
    record = lookup.record
    if record is None:
        return None
    policy = record.p
    if lookup.found_at is not None and lookup.found_at != from_domain and record.sp:
        policy = record.sp
    if record.pct == 0:
        policy = _POLICIES[max(0, _POLICIES.index(policy) - 1)]
    return policy


def evaluate_dmarc(
    from_domain: str | None,
    lookup: DmarcLookup,
    spf: MethodResult | None,
    dkim: Sequence[MethodResult],
) -> DmarcOutcome:
    """The DMARC verdict for one message.  Pure."""
    if from_domain is None:
        return DmarcOutcome(
            MethodResult("dmarc", "permerror", None, "no single valid From domain"),
            aligned=False,
            policy=None,
            temporary_error=False,
        )
    policy = effective_policy(lookup, from_domain)

    # (identifier domain, definitely passed, might have passed)
    spf_candidates: list[tuple[str, bool, bool]] = []
    if spf is not None and spf.domain:
        spf_candidates.append((spf.domain, spf.result == "pass", spf.result == "temperror"))
    dkim_candidates = [
        (m.domain, m.result == "pass", m.result == "temperror") for m in dkim if m.domain
    ]

    if lookup.temp_error:
        modes: list[tuple[str, str]] = list(product("rs", "rs"))
    elif lookup.record is not None:
        modes = [(lookup.record.adkim, lookup.record.aspf)]
    else:
        modes = [("r", "r")]

    def aligned_via(adkim: str, aspf: str, optimistic: bool) -> list[str]:
        via: list[str] = []
        for domain, ok, maybe in spf_candidates:
            if (ok or (optimistic and maybe)) and domains_aligned(domain, from_domain, aspf):
                via.append("spf")
        for domain, ok, maybe in dkim_candidates:
            if (ok or (optimistic and maybe)) and domains_aligned(domain, from_domain, adkim):
                via.append(f"dkim d={domain}")
        return via

    definite = all(aligned_via(a, s, optimistic=False) for a, s in modes)
    possible = any(aligned_via(a, s, optimistic=True) for a, s in modes)

    if lookup.record is not None:
        prefix = f"p={policy}"
        r = lookup.record
        if r.pct != 100:
            prefix += f" pct={r.pct}"
        if (r.adkim, r.aspf) != ("r", "r"):
            prefix += f" adkim={r.adkim} aspf={r.aspf}"
    elif lookup.temp_error:
        prefix = "record look-up failed"
    else:
        prefix = "no DMARC record" + (f" ({lookup.error})" if lookup.error else "")

    if definite:
        via = aligned_via(*modes[0], optimistic=False)
        result = "pass" if lookup.record is not None else "none"
        if lookup.temp_error:
            result = "pass"
        detail = f"{prefix}; aligned via {', '.join(dict.fromkeys(via))}"
        return DmarcOutcome(MethodResult("dmarc", result, from_domain, detail), True, policy, False)
    if not possible:
        result = "fail" if lookup.record is not None else "none"
        detail = f"{prefix}; no aligned SPF or DKIM pass"
        return DmarcOutcome(
            MethodResult("dmarc", result, from_domain, detail), False, policy, False
        )
    detail = f"{prefix}; alignment unknown after a temporary DNS error"
    return DmarcOutcome(
        MethodResult("dmarc", "temperror", from_domain, detail), False, policy, True
    )
