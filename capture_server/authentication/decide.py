"""The pure half: turn evidence into a verdict for the pipeline's authenticate stage."""

from __future__ import annotations

from dataclasses import dataclass

from .results import AuthenticationResults
from .structure import StructuralProblem

__all__ = ["MODES", "AuthVerdict", "decide"]

MODES = ("off", "report", "enforce")


@dataclass(frozen=True)
class AuthVerdict:
    outcome: str  # "pass" | "fail" | "tempfail" | "skipped"
    reason: str  # "auth_failed" or ""
    detail: str


def _summary(results: AuthenticationResults) -> str:
    parts = [
        f"{m.method}={m.result}" + (f" ({m.domain})" if m.domain else "") for m in results.methods
    ]
    return ", ".join(parts) if parts else "no methods"


def decide(
    results: AuthenticationResults | None,
    structure: tuple[StructuralProblem, ...],
    mode: str,
) -> AuthVerdict:
    """Pure.

    * ``off``: skipped.
    * ``report``: always pass; the detail says what would have failed.
    * ``enforce``: a structural problem fails; then an aligned SPF or DKIM pass for the
      From domain passes (whatever the published DMARC policy, and also when the domain
      publishes no DMARC record: the RFC's relaxed defaults apply); then a temporary DNS
      error is a tempfail (the sender retries); anything else fails with ``auth_failed``.
      No results at all (verification did not run) is a tempfail, never a pass.
    """
    if mode not in MODES:
        raise ValueError(f"unknown authentication mode: {mode!r}")
    if mode == "off":
        return AuthVerdict("skipped", "", "authentication checks are off")

    problems: list[str] = [f"{p.code}: {p.detail}" for p in structure]
    temporary = False
    if results is None:
        problems.append("no authentication results")
        temporary = True
    else:
        where = "" if results.source == "local" else f" [{results.source} {results.authserv_id}]"
        if not results.aligned:
            domain = results.from_domain or "(no From domain)"
            if results.temporary_error:
                temporary = True
                problems.append(
                    f"temporary DNS error deciding {domain}: {_summary(results)}{where}"
                )
            else:
                problems.append(
                    f"From domain {domain} not authenticated: {_summary(results)}{where}"
                )

    if mode == "report":
        if problems:
            return AuthVerdict("pass", "", "report only; would fail: " + "; ".join(problems))
        assert results is not None
        return AuthVerdict("pass", "", f"authenticated {results.from_domain}")

    if structure:
        return AuthVerdict("fail", "auth_failed", "; ".join(problems))
    if results is not None and results.aligned:
        return AuthVerdict("pass", "", f"authenticated {results.from_domain}: {_summary(results)}")
    if temporary:
        return AuthVerdict("tempfail", "", "; ".join(problems))
    return AuthVerdict("fail", "auth_failed", "; ".join(problems))
