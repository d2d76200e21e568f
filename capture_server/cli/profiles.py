"""Contact profiles: `contact set`, `contacts suggestions` (accept, reject), duplicates."""

from __future__ import annotations

from typing import Annotated

import phonenumbers
import typer
from rich.table import Table

from capture_server.cli.admin import DefaultToList
from capture_server.cli.common import (
    JsonLine,
    JsonLines,
    SlugArg,
    contacts_app,
    fail,
    out,
    print_json,
    with_store,
)
from capture_server.cli.rules import contact_app
from capture_server.store import profiles

suggestions_app = typer.Typer(
    cls=DefaultToList,
    help="Contact fields read from signatures, not sure enough to fill the contact "
    "(`contacts suggestions SLUG` lists; accept or reject by id).",
    no_args_is_help=True,
)
contacts_app.add_typer(suggestions_app, name="suggestions")


@contact_app.command("set")
def contact_set(
    slug: SlugArg,
    email: Annotated[str, typer.Argument(help="any address of the contact")],
    name: Annotated[str | None, typer.Option("--name", help="full name")] = None,
    title: Annotated[str | None, typer.Option("--title", help="job title")] = None,
    company: Annotated[str | None, typer.Option("--company", help="company name")] = None,
    phone: Annotated[
        str | None, typer.Option("--phone", help="international form, e.g. +49 30 1234567")
    ] = None,
    website: Annotated[
        str | None, typer.Option("--website", help="e.g. https://example.com")
    ] = None,
    as_json: JsonLine = False,
) -> None:
    """Set contact fields by hand ("" clears one); capture never overwrites them afterwards."""
    values = {
        "name": name,
        "job_title": title,
        "company_name": company,
        "phone": _phone(phone) if phone else phone,
        "website": website,
    }
    result = with_store(
        lambda store: profiles.set_fields(
            store, slug, email, {k: v for k, v in values.items() if v is not None}
        )
    )
    if as_json:
        print_json(result)
        return
    shown = ", ".join(f"{k}={v}" for k, v in result.items() if k in values and v is not None)
    out.print(f"contact {result['address']}: {shown}", markup=False)


def _phone(value: str) -> str:
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_valid_number(number):
        fail(f"--phone {value!r}: give a valid number in international form, e.g. +49 30 1234567")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@suggestions_app.command("list")
def suggestions_list(
    slug: SlugArg,
    show_all: Annotated[
        bool, typer.Option("--all", help="also accepted and rejected ones")
    ] = False,
    as_json: JsonLines = False,
) -> None:
    """Pending suggestions (with --all: decided ones too), oldest first."""
    rows = with_store(
        lambda store: profiles.suggestions(store, slug, None if show_all else profiles.PENDING)
    )
    if as_json:
        for row in rows:
            print_json(row)
        return
    table = Table("id", "contact", "field", "value", "confidence", "status")
    for row in rows:
        table.add_row(
            str(row["id"]), row["contact"], row["field"], row["value"],
            f"{row['confidence']:.2f}", row["status"],
        )  # fmt: skip
    out.print(table)


def _decide(slug: str, suggestion_id: int, accept: bool, as_json: bool) -> None:
    row = with_store(lambda store: profiles.decide(store, slug, suggestion_id, accept))
    if as_json:
        print_json(row)
        return
    out.print(
        f"suggestion {row['id']} {row['status']}: {row['contact']} {row['field']} {row['value']!r}",
        markup=False,
    )


@suggestions_app.command("accept")
def suggestions_accept(
    slug: SlugArg,
    suggestion_id: Annotated[int, typer.Argument(help="the id `contacts suggestions` shows")],
    as_json: JsonLine = False,
) -> None:
    """Accept: the value goes into the contact's field (as if a person set it)."""
    _decide(slug, suggestion_id, True, as_json)


@suggestions_app.command("reject")
def suggestions_reject(
    slug: SlugArg,
    suggestion_id: Annotated[int, typer.Argument(help="the id `contacts suggestions` shows")],
    as_json: JsonLine = False,
) -> None:
    """Reject: the contact is left as it is and the same value is not suggested again."""
    _decide(slug, suggestion_id, False, as_json)


@contacts_app.command("duplicates")
def contacts_duplicates(slug: SlugArg, as_json: JsonLines = False) -> None:
    """Contacts that look like one person; merge with `contacts merge SLUG KEEP MERGE`."""
    rows = with_store(lambda store: profiles.duplicates(store, slug))
    if as_json:
        for row in rows:
            print_json(row)
        return
    table = Table("keep", "merge", "reason", "detail")
    for row in rows:
        table.add_row(row["keep"], row["merge"], row["reason"], row["detail"])
    out.print(table)
