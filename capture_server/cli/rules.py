"""Rules users manage: the never-log list, contact deletion, user addresses and sharing, deals."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

import typer
from rich.table import Table

from capture_server.cli.common import (
    JsonLines,
    SlugArg,
    app,
    fail,
    out,
    print_json,
    user_app,
    with_store,
)
from capture_server.pipeline.message import AddressKind, SharingLevel
from capture_server.store import rules

never_log_app = typer.Typer(
    help="Addresses and domains (subdomains included) whose mail is never logged."
)
contact_app = typer.Typer(
    help="One contact: set fields by hand, or delete (soft, or permanent with a tombstone)."
)
deal_app = typer.Typer(help="Deals: engagements associate with their contacts' open deals.")
address_app = typer.Typer(help="A user's extra addresses: aliases, connected inboxes, teams.")
app.add_typer(never_log_app, name="never-log")
app.add_typer(contact_app, name="contact")
app.add_typer(deal_app, name="deal")
user_app.add_typer(address_app, name="address")


# -- never-log ------------------------------------------------------------------------------


@never_log_app.command("add")
def never_log_add(
    slug: SlugArg,
    pattern: Annotated[str, typer.Argument(help="ann@example.com, or example.com (+ subdomains)")],
    purge: Annotated[
        bool,
        typer.Option(
            "--purge",
            help="also delete what is already logged: emails whose every external participant "
            "is never-logged, and the pattern's contacts; other emails lose those participants",
        ),
    ] = False,
    as_json: JsonLines = False,
) -> None:
    """Never log mail with this address or domain; history is kept unless --purge."""
    report = with_store(lambda store: rules.add_never_log(store, slug, pattern, purge=purge))
    if as_json:
        print_json(report.as_dict())
        return
    state = "added to" if report.added else "already on"
    out.print(f"{report.pattern} {state} the never-log list of {slug}", markup=False)
    if purge:
        out.print(
            f"purged: {report.engagements_deleted} email(s) deleted, "
            f"{report.engagements_trimmed} email(s) trimmed, "
            f"{report.contacts_deleted} contact(s) deleted, "
            f"{report.companies_deleted} compan(ies) deleted"
        )


@never_log_app.command("list")
def never_log_list(slug: SlugArg, as_json: JsonLines = False) -> None:
    """The account's never-log list (one JSON object per line with --json)."""
    entries = with_store(lambda store: rules.never_log_entries(store, slug))
    if as_json:
        for entry in entries:
            print_json(entry)
        return
    for entry in entries:
        out.print(f"{entry['pattern']}  ({entry['kind']})", markup=False)


@never_log_app.command("remove")
def never_log_remove(
    slug: SlugArg,
    pattern: Annotated[str, typer.Argument(help="the address or domain to log again")],
) -> None:
    """Log this address or domain again from now on (purged history does not come back)."""
    removed = with_store(lambda store: rules.remove_never_log(store, slug, pattern))
    out.print(f"{removed} removed from the never-log list of {slug}", markup=False)


# -- contact --------------------------------------------------------------------------------


@contact_app.command("delete")
def contact_delete(
    slug: SlugArg,
    email: Annotated[str, typer.Argument(help="any address of the contact")],
    permanent: Annotated[
        bool,
        typer.Option(
            "--permanent",
            help="erase name and addresses (also from logged emails' participants) and never "
            "re-create the contact",
        ),
    ] = False,
) -> None:
    """Delete a contact: hidden but still matched, or (--permanent) erased for good."""
    message = with_store(
        lambda store: rules.delete_contact(store, slug, email, permanent=permanent)
    )
    out.print(message, markup=False)


# -- users ----------------------------------------------------------------------------------


class ExtraKind(StrEnum):
    alias = "alias"
    connected = "connected"
    team = "team"


class SharingChoice(StrEnum):
    metadata = "metadata"
    subject = "subject"
    everything = "everything"


@address_app.command("add")
def user_address_add(
    slug: SlugArg,
    email: Annotated[str, typer.Argument(help="the user's login email")],
    address: Annotated[str, typer.Argument(help="the address to add")],
    kind: Annotated[ExtraKind, typer.Option("--kind", help="alias, connected or team")],
) -> None:
    """Give a user another address their mail may come from."""
    added = with_store(
        lambda store: rules.add_user_address(store, slug, email, address, AddressKind(kind.value))
    )
    out.print(f"{added} ({kind.value}) added to {email.strip().lower()}", markup=False)


@address_app.command("remove")
def user_address_remove(
    slug: SlugArg,
    email: Annotated[str, typer.Argument(help="the user's login email")],
    address: Annotated[str, typer.Argument(help="the extra address to remove")],
    kind: Annotated[
        ExtraKind | None, typer.Option("--kind", help="accepted for symmetry; not needed")
    ] = None,
) -> None:
    """Remove one of a user's extra addresses (the login stays)."""
    removed = with_store(lambda store: rules.remove_user_address(store, slug, email, address))
    out.print(f"{removed} removed from {email.strip().lower()}", markup=False)


@user_app.command("list")
def user_list(slug: SlugArg, as_json: JsonLines = False) -> None:
    """Users and their addresses (one JSON object per line with --json)."""
    rows = with_store(lambda store: rules.users(store, slug))
    if as_json:
        for row in rows:
            print_json(row)
        return
    table = Table("id", "email", "name", "sharing", "addresses")
    for row in rows:
        extra = ", ".join(f"{a['address']} ({a['kind']})" for a in row["addresses"][1:])
        table.add_row(str(row["id"]), row["email"], row["name"] or "", row["sharing"], extra)
    out.print(table)


@user_app.command("set-sharing")
def user_set_sharing(
    slug: SlugArg,
    email: Annotated[str, typer.Argument(help="the user's login email")],
    level: Annotated[SharingChoice, typer.Argument(help="metadata, subject or everything")],
) -> None:
    """What of this user's mail is kept from now on (logged emails are not rewritten)."""
    with_store(lambda store: rules.set_sharing(store, slug, email, SharingLevel(level.value)))
    out.print(f"{email.strip().lower()}: sharing {level.value}", markup=False)


# -- deals ----------------------------------------------------------------------------------


@deal_app.command("add")
def deal_add(
    slug: SlugArg,
    name: Annotated[str, typer.Argument(help="the deal's name")],
    contact: Annotated[list[str], typer.Option("--contact", help="a contact's address (repeat)")],
    stage: Annotated[str, typer.Option("--stage", help="free text, e.g. qualified")] = "open",
    close_date: Annotated[
        str | None, typer.Option("--close-date", help="expected close date, YYYY-MM-DD")
    ] = None,
    as_json: JsonLines = False,
) -> None:
    """Open a deal with these contacts; their logged emails associate with it."""
    when = None
    if close_date is not None:
        try:
            when = datetime.strptime(close_date, "%Y-%m-%d").replace(tzinfo=UTC)
        except ValueError:
            fail(f"--close-date {close_date!r} is not a date like 2026-12-31")
    deal_id = with_store(
        lambda store: rules.add_deal(store, slug, name, contact, stage=stage, close_date=when)
    )
    if as_json:
        print_json({"id": deal_id})
        return
    out.print(f"deal {deal_id} opened", markup=False)


@deal_app.command("close")
def deal_close(
    slug: SlugArg,
    deal_id: Annotated[int, typer.Argument(metavar="ID", help="the deal's id")],
    stage: Annotated[str, typer.Option("--stage", help="e.g. won or lost")] = "closed",
) -> None:
    """Close a deal: new emails no longer associate with it."""
    with_store(lambda store: rules.close_deal(store, slug, deal_id, stage))
    out.print(f"deal {deal_id} closed ({stage})", markup=False)


@deal_app.command("list")
def deal_list(slug: SlugArg, as_json: JsonLines = False) -> None:
    """Deals and their contacts (one JSON object per line with --json)."""
    rows = with_store(lambda store: rules.deals(store, slug))
    if as_json:
        for row in rows:
            print_json(row)
        return
    table = Table("id", "name", "stage", "open", "contacts")
    for row in rows:
        table.add_row(
            str(row["id"]), row["name"], row["stage"], "yes" if row["open"] else "no",
            ", ".join(row["contacts"]),
        )  # fmt: skip
    out.print(table)
