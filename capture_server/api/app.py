"""Starlette routes of the read API. The account is the token's; store calls run in threads."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from capture_server.api.openapi import openapi_document
from capture_server.pipeline.message import Action, Kind, Reason
from capture_server.store import api_queries, api_tokens
from capture_server.store.api_queries import BadCursor, EngagementFilter, EventFilter
from capture_server.store.repositories import Store, StoreUnavailable

DEFAULT_LIMIT = 50

Handler = Callable[[Request, int], Awaitable[Any]]


class BadRequest(ValueError):
    """A query parameter the API does not accept; the message says which and why."""


def _error(status: int, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers or None)


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _limit(request: Request) -> int:
    text = request.query_params.get("limit", str(DEFAULT_LIMIT))
    if not text.isdigit() or not 1 <= int(text) <= api_queries.MAX_LIMIT:
        raise BadRequest(f"limit: a whole number from 1 to {api_queries.MAX_LIMIT}")
    return int(text)


def _since(request: Request) -> datetime | None:
    text = request.query_params.get("since", "").strip()
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError as error:
        raise BadRequest("since: an ISO 8601 date or date-time (UTC unless given)") from error
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _one_of(request: Request, name: str, allowed: list[str]) -> str | None:
    value = request.query_params.get(name) or None
    if value is not None and value not in allowed:
        raise BadRequest(f"{name}: one of {', '.join(allowed)}")
    return value


def _page_json(page: api_queries.Page) -> dict[str, Any]:
    # next_cursor is always given: at the end (has_more false) it is where to poll again.
    return {"items": page.items, "next_cursor": page.next_cursor, "has_more": page.has_more}


def build_app(store: Store) -> Starlette:
    def authorised(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            token = _bearer(request)
            if token is None:
                return _error(401, "missing bearer token", **{"WWW-Authenticate": "Bearer"})
            try:
                account_id = await anyio.to_thread.run_sync(api_tokens.authenticate, store, token)
                if account_id is None:
                    return _error(401, "invalid or revoked token", **{"WWW-Authenticate": "Bearer"})
                result = await handler(request, account_id)
            except (BadRequest, BadCursor) as error:
                return _error(400, str(error))
            except StoreUnavailable:
                return _error(503, "the database is unavailable; try again")
            if isinstance(result, Response):
                return result
            return JSONResponse(result)

        return endpoint

    async def engagements(request: Request, account_id: int) -> Any:
        params = request.query_params
        wanted = EngagementFilter(
            since=_since(request),
            thread_id=params.get("thread_id") or None,
            contact=params.get("contact") or None,
            kind=_one_of(request, "kind", [kind.value for kind in Kind]),
        )
        page = await anyio.to_thread.run_sync(
            api_queries.engagements_page,
            store, account_id, wanted, _limit(request), params.get("cursor") or None,
        )  # fmt: skip
        return _page_json(page)

    async def engagement(request: Request, account_id: int) -> Any:
        found = await anyio.to_thread.run_sync(
            api_queries.engagement, store, account_id, request.path_params["engagement_id"]
        )
        return found if found is not None else _error(404, "no such engagement")

    async def contacts(request: Request, account_id: int) -> Any:
        page = await anyio.to_thread.run_sync(
            api_queries.contacts_page,
            store, account_id, _since(request), _limit(request),
            request.query_params.get("cursor") or None,
        )  # fmt: skip
        return _page_json(page)

    async def events(request: Request, account_id: int) -> Any:
        wanted = EventFilter(
            since=_since(request),
            reason=_one_of(request, "reason", [reason.value for reason in Reason]),
            decision=_one_of(request, "decision", [action.value for action in Action]),
        )
        page = await anyio.to_thread.run_sync(
            api_queries.events_page,
            store, account_id, wanted, _limit(request),
            request.query_params.get("cursor") or None,
        )  # fmt: skip
        return _page_json(page)

    async def healthz(_request: Request) -> Response:
        try:
            await anyio.to_thread.run_sync(store.ping)
        except Exception:
            return _error(503, "the database does not answer")
        return JSONResponse({"status": "ok"})

    async def openapi(_request: Request) -> Response:
        return JSONResponse(openapi_document())

    async def not_found(_request: Request, _error_: Exception) -> Response:
        return _error(404, "not found")

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/v1/openapi.json", openapi),
            Route("/v1/engagements", authorised(engagements)),
            Route("/v1/engagements/{engagement_id}", authorised(engagement)),
            Route("/v1/contacts", authorised(contacts)),
            Route("/v1/events", authorised(events)),
        ],
        exception_handlers={404: not_found},
    )
