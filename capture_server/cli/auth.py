"""Sender authentication: is a rep's domain ready for auth_mode enforce?"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer
from rich.markup import escape

from capture_server.authentication import DnsConfig, check_domain
from capture_server.cli.common import app, out, print_json, settings

auth_app = typer.Typer(help="Sender authentication (SPF, DKIM, DMARC) of reps' domains.")
app.add_typer(auth_app, name="auth")


@auth_app.command("check")
def auth_check(
    domain: Annotated[str, typer.Argument(help="the sending domain to check, e.g. acme.com")],
    as_json: Annotated[bool, typer.Option("--json", help="the report as one JSON object")] = False,
) -> None:
    """Check DOMAIN's SPF, DMARC, DKIM keys at common selectors and MX.

    Exits 1 when the domain cannot pass enforce mode (no DMARC record, or neither a valid
    SPF record nor a DKIM key was found), so scripts can check every rep's domain.
    """
    current = settings()
    dns = DnsConfig(current.dns_nameservers, current.dns_port, current.dns_timeout)
    report = asyncio.run(check_domain(domain, dns))
    if as_json:
        print_json(report)
    else:
        _print(report)
    if not report.get("ready"):
        raise typer.Exit(1)


def _print(report: dict[str, Any]) -> None:
    ready = "[green]ready[/]" if report.get("ready") else "[red]not ready[/]"
    domain = escape(str(report["domain"]))
    out.print(f"[bold]{domain}[/]: {ready} for auth_mode enforce", markup=True)
    spf = report.get("spf") or {}
    if spf.get("present"):
        out.print(f"  SPF    {spf.get('record') or spf.get('records')}", markup=False)
    dmarc = report.get("dmarc") or {}
    if dmarc.get("present"):
        out.print(f"  DMARC  {dmarc.get('record')} (policy {dmarc.get('policy')})", markup=False)
    dkim = report.get("dkim") or {}
    for found in dkim.get("found", []):
        state = "valid" if found.get("valid") else "invalid"
        out.print(f"  DKIM   selector {found.get('selector')}: {state}", markup=False)
    mx = report.get("mx") or {}
    if mx.get("hosts"):
        out.print(f"  MX     {', '.join(mx['hosts'])}", markup=False)
    for problem in report.get("problems", []):
        out.print(f"  - {problem}", markup=False)
