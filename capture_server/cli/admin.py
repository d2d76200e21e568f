"""Admin commands: account list/show/rotate, contacts merge, events (filters, show), stats."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.table import Table
from typer.core import TyperGroup

from capture_server.cli.common import (
    JsonLine,
    JsonLines,
    SlugArg,
    account_app,
    app,
    contacts_app,
    fail,
    open_store,
    out,
    print_json,
    settings,
    with_store,
)
from capture_server.pipeline.message import Action, Kind, Reason
from capture_server.store import operations
from capture_server.store.repositories import StoreError

_RELATIVE = re.compile(r"^(\d{1,6})\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
SINCE_HELP = (
    "only since then: ISO date or date-time (UTC unless given), or relative: 30m, 2h, 3d, 1w"
)


def parse_since(value: str | None, now: datetime | None = None) -> datetime | None:
    """'2h' → two hours ago; '2026-11-20' or '2026-11-20T08:00' → that moment (UTC if naive)."""
    if value is None or not value.strip():
        return None
    text = value.strip().lower()
    relative = _RELATIVE.match(text)
    if relative:
        amount, unit = int(relative.group(1)), relative.group(2)
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[unit]: amount})
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        fail(f"--since {value!r}: give an ISO date (2026-11-20), a date-time, or 2h / 3d / 1w")
    return when if when.tzinfo else when.replace(tzinfo=UTC)


# -- accounts ---------------------------------------------------------------------------------


@account_app.command("list")
def account_list(as_json: JsonLines = False) -> None:
    """List accounts with their capture addresses and sizes."""
    store = open_store(settings())
    rows = operations.accounts(store)
    if as_json:
        for row in rows:
            print_json(row)
        return
    table = Table("slug", "name", "domains", "users", "contacts", "engagements", "bcc address")
    for row in rows:
        table.add_row(
            row["slug"],
            row["name"],
            ", ".join(row["domains"]),
            str(row["users"]),
            str(row["contacts"]),
            str(row["engagements"]),
            row["bcc_address"] or "",
        )
    out.print(table)


@account_app.command("show")
def account_show(slug: SlugArg, as_json: JsonLine = False) -> None:
    """Show one account: domains, capture addresses (current and retired), users, sizes."""
    detail = with_store(lambda store: operations.account_detail(store, slug))
    if as_json:
        print_json(detail)
        return
    for key in ("slug", "name", "created_at", "token_generation"):
        out.print(f"{key}: {detail[key]}", markup=False)
    out.print(f"domains: {', '.join(detail['domains'])}", markup=False)
    for key in ("bcc_address", "forward_address", "reply_address"):
        out.print(f"{key}: {detail[key]}", markup=False)
    for key in ("users", "contacts", "engagements"):
        out.print(f"{key}: {detail[key]}", markup=False)
    for user in detail["user_list"]:
        extra = ", ".join(f"{a['address']} ({a['kind']})" for a in user["addresses"][1:])
        out.print(f"  user {user['email']}" + (f": {extra}" if extra else ""), markup=False)
    for retired in detail["retired_addresses"]:
        out.print(
            f"  retired {retired['kind']} {retired['address']} at {retired['retired_at']}",
            markup=False,
        )


class KindOption(StrEnum):
    bcc = "bcc"
    forward = "forward"
    reply = "reply"


@account_app.command("rotate")
def account_rotate(
    slug: SlugArg,
    kind: Annotated[
        KindOption | None,
        typer.Option("--kind", help="rotate only this address (default: all three)"),
    ] = None,
    as_json: JsonLine = False,
) -> None:
    """Issue new capture addresses; the old ones are retired and then refused (550 5.1.1)."""
    current = settings()
    store = open_store(current)
    kinds = [Kind(kind.value)] if kind else list(Kind)
    try:
        secret = store.server_secret(current.server_secret)
        rotated = operations.rotate_addresses(store, slug, kinds, current.capture_domain, secret)
    except StoreError as error:
        fail(str(error))
    if as_json:
        print_json(rotated)
        return
    out.print(f"account {rotated['slug']}: new capture addresses", markup=False)
    for key in ("bcc_address", "forward_address", "reply_address"):
        out.print(f"  {key}: {rotated[key]}", markup=False)
    for address in rotated["retired"]:
        out.print(f"  retired: {address}", markup=False)


# -- contacts ---------------------------------------------------------------------------------


@contacts_app.command("merge")
def contacts_merge(
    slug: SlugArg,
    keep: Annotated[str, typer.Argument(help="any address of the contact to keep")],
    merged: Annotated[str, typer.Argument(help="any address of the contact merged into it")],
    as_json: JsonLine = False,
) -> None:
    """Merge two contacts: addresses, engagements and deals move to the kept one."""
    report = with_store(lambda store: operations.merge_contacts(store, slug, keep, merged))
    if as_json:
        print_json(report)
        return
    out.print(
        f"{report['merged']} merged into {report['kept']}: {report['engagements_moved']} "
        f"engagement(s), {report['deals_moved']} deal(s); addresses: "
        + ", ".join(report["addresses"]),
        markup=False,
    )


# -- events -----------------------------------------------------------------------------------


class DefaultToList(TyperGroup):
    """`events SLUG ...` is `events list SLUG ...`; `events show SLUG ID` is a subcommand."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["list", *args]
        return super().parse_args(ctx, args)


events_app = typer.Typer(
    cls=DefaultToList,
    help="Capture events: why each message was or was not logged "
    "(`events SLUG` lists, `events show SLUG ID` prints one whole).",
    no_args_is_help=True,
)
app.add_typer(events_app, name="events")

REASONS = [reason.value for reason in Reason]
DECISIONS = [action.value for action in Action]


def _one_of(option: str, value: str | None, allowed: list[str]) -> str | None:
    if value is not None and value not in allowed:
        fail(f"{option} {value!r}: one of {', '.join(allowed)}")
    return value


@events_app.command("list")
def events_list(
    slug: SlugArg,
    reason: Annotated[
        str | None, typer.Option("--reason", help="only this reason code (e.g. not_a_reply)")
    ] = None,
    decision: Annotated[
        str | None,
        typer.Option("--decision", help="only this decision: log, ignore, reject, defer"),
    ] = None,
    sender: Annotated[
        str | None,
        typer.Option("--sender", help="envelope sender or From: an address, or a domain"),
    ] = None,
    since: Annotated[str | None, typer.Option("--since", help=SINCE_HELP)] = None,
    limit: Annotated[
        int, typer.Option(min=1, max=10000, help="at most this many, newest first")
    ] = 50,
    as_json: JsonLines = False,
) -> None:
    """Recent capture events, newest first: why each message was or was not logged."""
    wanted = operations.EventFilter(
        reason=_one_of("--reason", reason, REASONS),
        decision=_one_of("--decision", decision, DECISIONS),
        sender=sender,
        since=parse_since(since),
        limit=limit,
    )
    rows = with_store(lambda store: operations.events(store, slug, wanted))
    if as_json:
        for row in rows:
            print_json(row)
        return
    table = Table("id", "received", "kind", "from", "subject", "decision", "reason")
    for row in rows:
        table.add_row(
            row["id"],
            row["received_at"][:16],
            row["kind"] or "",
            row["from"] or row["mail_from"],
            row["subject"],
            row["decision"],
            row["reason"],
        )
    out.print(table)


@events_app.command("show")
def events_show(
    slug: SlugArg,
    event_id: Annotated[str, typer.Argument(help="evt_… as in the SMTP reply or `events`")],
    as_json: JsonLine = False,
) -> None:
    """One capture event whole: envelope, headers, decision, every stage of the trace."""
    event = with_store(lambda store: operations.event_detail(store, slug, event_id))
    if as_json:
        print_json(event)
        return
    for key in (
        "id", "received_at", "protocol", "mail_from", "from", "rcpt", "kind", "message_id",
        "received_message_id", "subject", "decision", "reason", "smtp_reply", "engagement_id",
    ):  # fmt: skip
        out.print(f"{key}: {event[key] if event[key] is not None else ''}", markup=False)
    out.print("trace:")
    for entry in event["trace"]:
        out.print(f"  {entry['stage']:<13} {entry['outcome']:<7} {entry['detail']}", markup=False)
    for warning in event["warnings"]:
        out.print(f"warning: {warning}", markup=False)
    authentication = event["authentication"]
    if authentication:
        out.print(
            f"authentication: {authentication.get('mode')} → {authentication.get('outcome')}",
            markup=False,
        )


# -- stats ------------------------------------------------------------------------------------


@app.command()
def stats(
    slug: SlugArg,
    since: Annotated[str | None, typer.Option("--since", help=SINCE_HELP)] = None,
    as_json: JsonLine = False,
) -> None:
    """Messages by decision and reason, engagements, contacts, companies, top senders."""
    report = with_store(lambda store: operations.stats(store, slug, parse_since(since)))
    if as_json:
        print_json(report)
        return
    _print_stats(report)


def _print_stats(report: dict[str, Any]) -> None:
    since = f" since {report['since']}" if report["since"] else ""
    out.print(f"{report['account']}{since}: {report['messages']} message(s)", markup=False)
    out.print(
        f"created: {report['engagements']} engagement(s), {report['contacts']} contact(s), "
        f"{report['companies']} compan(ies)",
        markup=False,
    )
    reasons = Table("decision", "reason", "messages")
    for row in report["by_reason"]:
        reasons.add_row(row["decision"], row["reason"], str(row["messages"]))
    out.print(reasons)
    senders = Table("top sender", "messages")
    for row in report["top_senders"]:
        senders.add_row(row["address"], str(row["messages"]))
    out.print(senders)
