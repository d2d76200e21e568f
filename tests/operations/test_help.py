"""`capture-server --help` is complete: every command, argument and option says what it is."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import typer.main

from capture_server.cli import app


def _commands(command: Any, path: str) -> Iterator[tuple[str, Any]]:
    yield path, command
    # typer vendors its own click: a group is whatever has subcommands.
    if isinstance(getattr(command, "commands", None), dict):
        for name, sub in command.commands.items():
            yield from _commands(sub, f"{path} {name}")


def test_every_command_and_parameter_has_help() -> None:
    root = typer.main.get_command(app)
    missing = []
    walked = list(_commands(root, "capture-server"))
    for path, command in walked:
        if not (command.help or command.short_help):
            missing.append(path)
        for param in command.params:
            if param.name == "help":
                continue
            if not (getattr(param, "help", None) or "").strip():
                missing.append(f"{path} {param.name}")
    assert missing == []
    names = {path for path, _ in walked}
    # The section-4 commands and the operations ones are all there.
    for expected in ("account list", "account rotate", "account show", "contacts merge",
                     "events list", "events show", "stats", "ingest", "dry-run"):  # fmt: skip
        assert f"capture-server {expected}" in names, expected


def test_the_contact_group_help_names_what_it_does() -> None:
    """`capture-server --help` said `contact` only deletes; it also sets fields by hand."""
    contact = typer.main.get_command(app).commands["contact"]  # type: ignore[attr-defined]
    assert set(contact.commands) == {"set", "delete"}
    assert "set fields" in contact.help and "delete" in contact.help
