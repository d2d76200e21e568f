"""Accounts, their settings and capture addresses; users and their addresses."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from capture_server.account_settings import SETTING_NAMES, SettingError
from capture_server.cli.common import (
    SlugArg,
    account_app,
    fail,
    open_store,
    out,
    print_json,
    settings,
    user_app,
    with_store,
)
from capture_server.pipeline.message import (
    AccountRules,
    SharingLevel,
)
from capture_server.store.repositories import StoreError


@account_app.command("add")
def account_add(
    slug: Annotated[str, typer.Argument(help="short name: lower-case letters, digits, -")],
    name: Annotated[str, typer.Option("--name", help="the company's name")],
    domain: Annotated[
        list[str], typer.Option("--domain", help="the account's own email domain (repeatable)")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON object")] = False,
) -> None:
    """Create an account and print its capture addresses."""
    current = settings()
    store = open_store(current)
    try:
        secret = store.server_secret(current.server_secret)
        addresses = store.create_account(slug, name, domain, current.capture_domain, secret)
    except StoreError as error:
        fail(str(error))
    if as_json:
        print_json({"slug": slug.lower(), **addresses})
        return
    out.print(f"account {slug.lower()} created")
    for key in ("bcc_address", "forward_address", "reply_address"):
        out.print(f"  {key}: {addresses[key]}")


@account_app.command("addresses")
def account_addresses(
    slug: SlugArg, as_json: Annotated[bool, typer.Option("--json", help="one JSON object")] = False
) -> None:
    """Print an account's current capture addresses."""
    addresses = with_store(lambda store: store.capture_addresses(slug))
    if as_json:
        print_json(addresses)
    else:
        for key, value in sorted(addresses.items()):
            out.print(f"{key}: {value}")


class SharingOption(StrEnum):
    metadata = "metadata"
    subject = "subject"
    everything = "everything"


@user_app.command("add")
def user_add(
    slug: Annotated[str, typer.Argument(help="the account")],
    email: Annotated[str, typer.Argument(help="the user's login email")],
    name: Annotated[str | None, typer.Option("--name", help="the user's display name")] = None,
    alias: Annotated[list[str] | None, typer.Option("--alias", help="alias address")] = None,
    connected: Annotated[
        list[str] | None, typer.Option("--connected", help="connected inbox address")
    ] = None,
    team: Annotated[
        list[str] | None, typer.Option("--team", help="team address this user connected")
    ] = None,
    sharing: Annotated[
        SharingOption, typer.Option(help="what of this user's mail is kept")
    ] = SharingOption.everything,
) -> None:
    """Add a user (rep) who may log mail."""
    user_id = with_store(
        lambda store: store.add_user(
            slug,
            email,
            name=name,
            aliases=alias or [],
            connected=connected or [],
            teams=team or [],
            sharing=SharingLevel(sharing.value),
        )
    )
    out.print(f"user {email.strip().lower()} added to {slug} (id {user_id})")


settings_app = typer.Typer(help="Per-account rule settings (contact policy, limits, lists, ...).")
account_app.add_typer(settings_app, name="settings")


def _defaults() -> AccountRules:
    current = settings()
    return AccountRules(
        max_body_bytes=current.max_body_bytes, max_attachment_bytes=current.max_attachment_bytes
    )


@settings_app.command("show")
def settings_show(
    slug: SlugArg, as_json: Annotated[bool, typer.Option("--json", help="one JSON object")] = False
) -> None:
    """Show an account's effective settings (its own values over the server defaults)."""
    values = with_store(lambda store: store.account_settings(slug, _defaults()))
    if as_json:
        print_json(values)
        return
    for key, value in values.items():
        shown = ", ".join(map(str, value)) if isinstance(value, list) else value
        out.print(f"{key}: {shown}", markup=False)


@settings_app.command("set")
def settings_set(
    slug: SlugArg,
    key: Annotated[str, typer.Argument(help=f"one of: {', '.join(SETTING_NAMES)}")],
    value: Annotated[str, typer.Argument(help="a value; lists as JSON or comma-separated")],
) -> None:
    """Change one setting of an account."""
    with_store(lambda store: store.set_account_setting(slug, key, value, _defaults()), SettingError)
    out.print(f"{slug}: {key} set")


@settings_app.command("reset")
def settings_reset(
    slug: SlugArg, key: Annotated[str, typer.Argument(help="the setting to reset")]
) -> None:
    """Put one setting back to its default."""
    with_store(lambda store: store.set_account_setting(slug, key, None, _defaults()), SettingError)
    out.print(f"{slug}: {key} back to its default")
