"""The read API: `account token create|list|revoke` and `api` (the API server alone)."""

from __future__ import annotations

import asyncio
import signal
from typing import TYPE_CHECKING, Annotated

import typer
from sqlalchemy.exc import DBAPIError

from capture_server.cli.common import (
    JsonLines,
    SlugArg,
    account_app,
    app,
    fail,
    first_line,
    open_store,
    out,
    print_json,
    settings,
    with_store,
)
from capture_server.logging import configure_logging, get_logger
from capture_server.store import api_tokens
from capture_server.store.repositories import Store

if TYPE_CHECKING:  # uvicorn and starlette load only when the API runs
    from capture_server.api.server import ApiServer

token_app = typer.Typer(help="Bearer tokens of the read API (`capture-server api`).")
account_app.add_typer(token_app, name="token")

DEFAULT_LISTEN = "127.0.0.1:8025"


@token_app.command("create")
def token_create(
    slug: SlugArg,
    name: Annotated[str, typer.Option("--name", help="what the token is for, e.g. the CRM")] = "",
    as_json: JsonLines = False,
) -> None:
    """Issue a token that reads this account's data; it is printed once, never again."""
    created = with_store(lambda store: api_tokens.create_token(store, slug, name))
    if as_json:
        print_json(created)
        return
    out.print(f"token {created['id']} ({created['name']}) for {slug}", markup=False)
    out.print(f"bearer token (shown once): {created['token']}", markup=False)


@token_app.command("list")
def token_list(slug: SlugArg, as_json: JsonLines = False) -> None:
    """The account's tokens (ids and names; the tokens themselves are never shown again)."""
    rows = with_store(lambda store: api_tokens.list_tokens(store, slug))
    for row in rows:
        if as_json:
            print_json(row)
            continue
        state = f"revoked {row['revoked_at'][:16]}" if row["revoked_at"] else "active"
        used = (row["last_used_at"] or "never")[:16]
        out.print(f"{row['id']}  {row['name']}  {state}  last used {used}", markup=False)


@token_app.command("revoke")
def token_revoke(
    slug: SlugArg,
    token_id: Annotated[str, typer.Argument(help="tok_… as in `account token list`")],
) -> None:
    """Revoke a token: the next request with it is answered 401."""
    with_store(lambda store: api_tokens.revoke_token(store, slug, token_id))
    out.print(f"token {token_id} revoked", markup=False)


@app.command("api")
def api(
    listen: Annotated[
        str | None,
        typer.Option(help=f"HOST:PORT (default: api_listen, else {DEFAULT_LISTEN})"),
    ] = None,
) -> None:
    """Run the read API alone (the daemon also serves it when api_listen is set)."""
    from capture_server.api.server import ApiServer

    current = settings()
    configure_logging(current.log_format, current.log_level)
    store = open_store(current)
    address = listen or current.api_listen or DEFAULT_LISTEN
    try:
        server = ApiServer(store, address, current.drain_seconds)
    except ValueError as error:
        fail(f"--listen: {error}", 2)
    try:
        asyncio.run(_serve(server, store))
    except OSError as error:
        fail(f"cannot listen on {address}: {error.strerror or error}")
    except DBAPIError as error:
        fail(f"cannot reach the database: {first_line(error)}")


async def _serve(server: ApiServer, store: Store) -> None:
    log = get_logger("api")
    host, port = await server.start()
    log.info("listening", protocol="api", host=host, port=port)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()
    await server.stop()
    store.engine.dispose()
    log.info("stopped")
