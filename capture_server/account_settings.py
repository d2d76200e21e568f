"""Per-account rule settings: stored as JSON overrides, validated against AccountRules."""

from __future__ import annotations

import dataclasses
import json
from functools import lru_cache
from typing import Any

from pydantic import TypeAdapter, ValidationError

from capture_server.pipeline.message import AccountRules

_ADAPTER = TypeAdapter(AccountRules)
RULE_NAMES = tuple(field.name for field in dataclasses.fields(AccountRules))
SETTING_NAMES = (*RULE_NAMES, "fallback_owner")


class SettingError(ValueError):
    """A setting name or value a user gave is wrong; the message says why."""


@lru_cache(maxsize=256)  # per message otherwise; AccountRules is frozen, so one serves all
def rules_from_json(settings_json: str, defaults: AccountRules) -> AccountRules:
    overrides = json.loads(settings_json or "{}")
    merged = {**describe_rules(defaults), **overrides}
    return _ADAPTER.validate_python(merged)


def describe_rules(rules: AccountRules) -> dict[str, Any]:
    """JSON-ready values, sets as sorted lists."""
    dumped: dict[str, Any] = _ADAPTER.dump_python(rules, mode="json")
    return {
        key: sorted(value) if isinstance(value, list) else value for key, value in dumped.items()
    }


def updated_settings(settings_json: str, key: str, raw: str | None, defaults: AccountRules) -> str:
    """The stored JSON with one key set from what a user typed (None removes the override)."""
    if key not in RULE_NAMES:
        raise SettingError(f"unknown setting {key!r}; settings: {', '.join(SETTING_NAMES)}")
    overrides = json.loads(settings_json or "{}")
    if raw is None:
        overrides.pop(key, None)
    else:
        overrides[key] = _typed(raw)
    try:
        rules_from_json(json.dumps(overrides), defaults)
    except ValidationError as error:
        problem = error.errors()[0]
        raise SettingError(f"{key}: {problem.get('msg', 'invalid value')}") from error
    return json.dumps(overrides, sort_keys=True)


def _typed(raw: str) -> Any:
    """JSON when it parses (numbers, true/false, lists); a comma list or plain text otherwise."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        if "," in raw:
            return [item.strip() for item in raw.split(",") if item.strip()]
        return raw
