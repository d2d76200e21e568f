"""Enrichment and integration: extractors (named patterns) and webhooks."""

from __future__ import annotations

from typing import Annotated

import typer

from capture_server.cli.common import (
    JsonLines,
    SlugArg,
    app,
    fail,
    out,
    print_json,
    with_store,
)
from capture_server.store import enrichment, webhooks

extractor_app = typer.Typer(
    help="Named google-re2 patterns over subject and body; values are kept on the engagement."
)
webhook_app = typer.Typer(help="HTTPS endpoints told of new engagements, contacts, rejections.")
app.add_typer(extractor_app, name="extractor")
app.add_typer(webhook_app, name="webhook")


# -- extractors -----------------------------------------------------------------------------


@extractor_app.command("add")
def extractor_add(
    slug: SlugArg,
    name: Annotated[str, typer.Argument(help='key in the engagement\'s "extracted" object')],
    pattern: Annotated[
        str, typer.Argument(help="google-re2 syntax, case-insensitive; the first group is kept")
    ],
) -> None:
    """Add (or replace) an extractor; a pattern re2 does not compile is refused."""
    with_store(lambda store: enrichment.add_extractor(store, slug, name, pattern))
    out.print(f"extractor {name.strip().lower()} saved for {slug}", markup=False)


@extractor_app.command("list")
def extractor_list(slug: SlugArg, as_json: JsonLines = False) -> None:
    """The account's extractors."""
    rows = with_store(lambda store: enrichment.extractors(store, slug))
    for row in rows:
        if as_json:
            print_json(row)
        else:
            out.print(f"{row['name']}  {row['pattern']}", markup=False)


@extractor_app.command("remove")
def extractor_remove(
    slug: SlugArg, name: Annotated[str, typer.Argument(help="the extractor's name")]
) -> None:
    """Stop extracting NAME (values already found stay)."""
    with_store(lambda store: enrichment.remove_extractor(store, slug, name))
    out.print(f"extractor {name} removed from {slug}", markup=False)


# -- webhooks -------------------------------------------------------------------------------


@webhook_app.command("add")
def webhook_add(
    slug: SlugArg,
    url: Annotated[str, typer.Argument(help="https://... (http only to loopback)")],
    event: Annotated[
        list[str] | None,
        typer.Option(
            "--event",
            help=f"one of {', '.join(webhooks.EVENTS)}; repeat for several (default: all)",
        ),
    ] = None,
    as_json: JsonLines = False,
) -> None:
    """Add an endpoint; prints the signing secret (shown only now)."""
    added = with_store(lambda store: webhooks.add_webhook(store, slug, url, event or []))
    if as_json:
        print_json(added)
        return
    out.print(f"webhook {added['id']} -> {added['url']} ({', '.join(added['events'])})")
    out.print(f"signing secret (shown once): {added['secret']}", markup=False)


@webhook_app.command("list")
def webhook_list(slug: SlugArg, as_json: JsonLines = False) -> None:
    """The account's webhooks (secrets are never shown again)."""
    rows = with_store(lambda store: webhooks.list_webhooks(store, slug))
    for row in rows:
        if as_json:
            print_json(row)
        else:
            out.print(f"{row['id']}  {row['url']}  {' '.join(row['events'])}", markup=False)


@webhook_app.command("remove")
def webhook_remove(
    slug: SlugArg, which: Annotated[str, typer.Argument(metavar="ID|URL", help="id or URL")]
) -> None:
    """Remove a webhook and its delivery log (pending deliveries are dropped)."""
    count = with_store(lambda store: webhooks.remove_webhook(store, slug, which))
    out.print(f"{count} webhook(s) removed from {slug}", markup=False)


@webhook_app.command("deliveries")
def webhook_deliveries(
    slug: SlugArg,
    status: Annotated[
        str | None, typer.Option("--status", help="pending, delivered or failed")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=10000, help="at most this many")
    ] = 100,
    as_json: JsonLines = False,
) -> None:
    """The delivery log, newest first."""
    if status is not None and status not in ("pending", "delivered", "failed"):
        fail("--status is pending, delivered or failed")
    rows = with_store(lambda store: webhooks.deliveries(store, slug, status, limit))
    for row in rows:
        if as_json:
            print_json(row)
        else:
            detail = row["last_error"] or (f"HTTP {row['last_status']}" if row["attempts"] else "")
            out.print(
                f"{row['id']}  {row['event']}  {row['status']}  "
                f"attempts {row['attempts']}  {detail}",
                markup=False,
            )


@webhook_app.command("retry")
def webhook_retry(
    slug: SlugArg,
    delivery: Annotated[
        list[str] | None, typer.Argument(help="delivery ids (default: every failed one)")
    ] = None,
) -> None:
    """Send failed deliveries again: the running daemon picks them up at once."""
    count = with_store(lambda store: webhooks.retry(store, slug, delivery or []))
    out.print(f"{count} deliver(ies) queued again", markup=False)
