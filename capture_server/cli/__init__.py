"""The `capture-server` command (typer). Thin: parse, call, print."""

from __future__ import annotations

import sys

# Importing the command modules registers their commands on the apps.
from capture_server.cli import (  # noqa: F401
    accounts,
    admin,
    api,
    archive,
    auth,
    capture,
    core,
    health,
    integration,
    profiles,
    quarantine,
    rules,
)
from capture_server.cli.common import app, err

__all__ = ["app", "main"]


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
