"""The OpenAPI 3.1 document of the read API, written by hand next to the routes it describes."""

from __future__ import annotations

from typing import Any

from capture_server import __version__
from capture_server.pipeline.message import Action, Kind, Reason
from capture_server.store.api_queries import MAX_LIMIT

_NULLABLE_STRING = {"type": ["string", "null"]}
_MAILBOX = {
    "type": "object",
    "required": ["address", "name"],
    "properties": {"address": _NULLABLE_STRING, "name": _NULLABLE_STRING},
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _param(name: str, description: str, schema: dict[str, Any] | None = None,
           where: str = "query", required: bool = False) -> dict[str, Any]:  # fmt: skip
    return {
        "name": name,
        "in": where,
        "required": required,
        "description": description,
        "schema": schema or {"type": "string"},
    }


_PAGING = [
    _param(
        "limit",
        "Items per page",
        {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 50},
    ),
    _param(
        "cursor",
        "The next_cursor of the previous answer (opaque). A cursor is bound to the listing, "
        "the token's account and the filters (since and the others) it was handed out for: "
        "send the same filters with it (the limit may change). With other filters or another "
        "account's token it is refused with 400: start again without a cursor. A cursor of an "
        "earlier version of this API is refused with 400 too: start again without one.",
    ),
]
_SINCE = _param("since", "ISO 8601 date or date-time, UTC unless given", {"type": "string"})


def _error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": _ref("Error")}},
    }


def _ok(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERRORS = {
    "400": _error_response(
        "A query parameter is not valid, or the cursor is not one of this listing, account "
        "and filters"
    ),
    "401": _error_response("Missing, unknown or revoked bearer token"),
    "503": _error_response("The database is unavailable; retry later"),
}


def _page(item: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["items", "next_cursor", "has_more"],
        "properties": {
            "items": {"type": "array", "items": _ref(item)},
            "next_cursor": {
                "type": "string",
                "description": "Always given: pass it as cursor for the next page. At the end "
                "(has_more false) it is where to poll again later: rows that become visible "
                "after it come next, each exactly once.",
            },
            "has_more": {
                "type": "boolean",
                "description": "True: ask for the next page now; false: nothing more now",
            },
        },
    }


def _listing(summary: str, item: str, parameters: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "operationId": f"list{item}s",
            "parameters": [*parameters, *_PAGING],
            "responses": {"200": _ok(_ref(f"{item}Page")), **_ERRORS},
        }
    }


_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}},
    },
    "Mailbox": _MAILBOX,
    "Attachment": {
        "type": "object",
        "required": ["filename", "content_type", "size", "sha256"],
        "properties": {
            "filename": _NULLABLE_STRING,
            "content_type": {"type": "string"},
            "size": {"type": "integer"},
            "sha256": {"type": "string"},
        },
    },
    "Engagement": {
        "type": "object",
        "description": "One logged email, as `engagements list --json` prints it",
        "required": [
            "id",
            "kind",
            "direction",
            "owner",
            "subject",
            "occurred_at",
            "message_id",
            "from",
            "to",
            "cc",
            "body_text",
            "attachments",
            "contacts",
            "companies",
            "deals",
            "thread_id",
            "note",
        ],
        "properties": {
            "id": {"type": "string"},
            "kind": {"type": "string", "enum": [kind.value for kind in Kind]},
            "direction": {"type": "string", "enum": ["outgoing", "incoming"]},
            "owner": _NULLABLE_STRING,
            "subject": {"type": "string"},
            "occurred_at": {"type": ["string", "null"], "format": "date-time"},
            "message_id": _NULLABLE_STRING,
            "from": _ref("Mailbox"),
            "to": {"type": "array", "items": _ref("Mailbox")},
            "cc": {"type": "array", "items": _ref("Mailbox")},
            "body_text": {"type": "string"},
            "attachments": {"type": "array", "items": _ref("Attachment")},
            "contacts": {"type": "array", "items": {"type": "string"}},
            "companies": {"type": "array", "items": {"type": "string"}},
            "deals": {"type": "array", "items": {"type": "integer"}},
            "thread_id": {"type": "string"},
            "note": _NULLABLE_STRING,
            "extracted": {
                "type": "object",
                "description": "Values of the account's extractors, by extractor name",
            },
        },
    },
    "Contact": {
        "type": "object",
        "description": "A contact, as `contacts list --json` prints it",
        "required": ["id", "name", "addresses", "company", "created_by"],
        "properties": {
            "id": {"type": "integer"},
            "name": _NULLABLE_STRING,
            "addresses": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Primary first, then additional",
            },
            "company": _NULLABLE_STRING,
            "created_by": {"type": "string"},
        },
    },
    "Event": {
        "type": "object",
        "description": "A capture event, as `events SLUG --json` prints it",
        "required": ["id", "received_at", "decision", "reason", "trace"],
        "properties": {
            "id": {"type": "string"},
            "received_at": {"type": "string", "format": "date-time"},
            "protocol": {"type": "string"},
            "mail_from": {"type": "string"},
            "from": _NULLABLE_STRING,
            "rcpt": {"type": "string"},
            "kind": _NULLABLE_STRING,
            "message_id": _NULLABLE_STRING,
            "received_message_id": _NULLABLE_STRING,
            "subject": {"type": "string"},
            "decision": {"type": "string", "enum": [action.value for action in Action]},
            "reason": {"type": "string", "enum": [reason.value for reason in Reason]},
            "smtp_reply": {"type": "string"},
            "engagement_id": _NULLABLE_STRING,
            "trace": {"type": "array", "items": {"type": "object"}},
            "warnings": {"type": "array"},
            "authentication": {"type": ["object", "null"]},
        },
    },
}
for _item in ("Engagement", "Contact", "Event"):
    _SCHEMAS[f"{_item}Page"] = _page(_item)


def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "capture-server read API",
            "version": __version__,
            "description": "Engagements, contacts and capture events of the token's account, "
            "oldest first in the order they became visible (their commit; within one commit by "
            "created_at or received_at, then id). A row that commits while a client pages, "
            "whatever its created_at, comes after every cursor already handed out: a client "
            "that keeps following next_cursor, also after the last page, sees every row exactly "
            "once. On PostgreSQL a row is listed once no transaction older than its own is "
            "still in progress, so a long-running write transaction delays (never hides) "
            "what commits after it.",
        },
        "security": [{"bearer": []}],
        "paths": {
            "/v1/engagements": _listing(
                "Logged emails, oldest first",
                "Engagement",
                [
                    _param("since", "Logged at or after: ISO 8601, UTC unless given"),
                    _param("thread_id", "Only this thread"),
                    _param("contact", "Only engagements with the contact of this address"),
                    _param(
                        "kind",
                        "Only this capture kind",
                        {"type": "string", "enum": [kind.value for kind in Kind]},
                    ),
                ],
            ),
            "/v1/engagements/{engagement_id}": {
                "get": {
                    "summary": "One engagement",
                    "operationId": "getEngagement",
                    "parameters": [_param("engagement_id", "eng_…", where="path", required=True)],
                    "responses": {
                        "200": _ok(_ref("Engagement")),
                        "404": _error_response("No engagement of this id in the account"),
                        **_ERRORS,
                    },
                }
            },
            "/v1/contacts": _listing("Contacts, oldest first", "Contact", [_SINCE]),
            "/v1/events": _listing(
                "Capture events (why each message was or was not logged), oldest first",
                "Event",
                [
                    _SINCE,
                    _param(
                        "reason",
                        "Only this reason code",
                        {"type": "string", "enum": [reason.value for reason in Reason]},
                    ),
                    _param(
                        "decision",
                        "Only this decision",
                        {"type": "string", "enum": [action.value for action in Action]},
                    ),
                ],
            ),
            "/healthz": {
                "get": {
                    "summary": "200 when the database answers, 503 otherwise",
                    "operationId": "health",
                    "security": [],
                    "responses": {
                        "200": _ok({"type": "object"}),
                        "503": _error_response("The database does not answer"),
                    },
                }
            },
            "/v1/openapi.json": {
                "get": {
                    "summary": "This document",
                    "operationId": "openapi",
                    "security": [],
                    "responses": {"200": _ok({"type": "object"})},
                }
            },
        },
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A token of `capture-server account token create SLUG`",
                }
            },
        },
    }
