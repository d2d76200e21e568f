"""`capture-server health`: is the store reachable and migrated, do the listeners answer?"""

from __future__ import annotations

import socket
from typing import Annotated

import typer
from sqlalchemy.exc import DBAPIError

from capture_server.cli.common import (
    app,
    first_line,
    missing_sqlite_file,
    out,
    print_json,
    settings,
)
from capture_server.config import parse_listen
from capture_server.store.db import DatabaseConfigError, is_up_to_date, make_engine

GREETING_TIMEOUT = 5.0


def _store_check(database_url: str) -> tuple[bool, str]:
    try:
        engine = make_engine(database_url)
        try:
            missing = missing_sqlite_file(engine)
            if missing is not None:  # connecting would leave an empty file behind a typo
                init = "run `capture-server init`"
                return False, f"no database file {missing}, so not migrated: {init}"
            if not is_up_to_date(engine):
                return False, "reachable, but not migrated: run `capture-server init`"
        finally:
            engine.dispose()
    except DatabaseConfigError as error:
        return False, str(error)
    except DBAPIError as error:
        return False, f"unreachable: {first_line(error)}"
    return True, "reachable and migrated"


def _listener_check(listen: str) -> tuple[bool, str]:
    host, port = parse_listen(listen)
    try:
        with socket.create_connection((host, port), timeout=GREETING_TIMEOUT) as sock:
            sock.settimeout(GREETING_TIMEOUT)
            greeting = sock.makefile("rb").readline()
            sock.sendall(b"QUIT\r\n")
    except OSError as error:
        return False, f"{listen}: {error.strerror or error}"
    if not greeting.startswith(b"220"):
        return False, f"{listen}: unexpected greeting {greeting[:60]!r}"
    return True, f"{listen}: answers 220"


@app.command()
def health(
    listeners: Annotated[
        bool, typer.Option("--listeners", help="also check that SMTP and LMTP answer 220")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object")] = False,
) -> None:
    """Check the store (reachable, migrated) and optionally the daemon's listeners.

    Exit status 0 when every check passes, 1 otherwise: fit for monitoring and probes.
    """
    current = settings()
    checks: dict[str, tuple[bool, str]] = {"store": _store_check(current.database_url)}
    if listeners:
        for name, listen in (("smtp", current.smtp_listen), ("lmtp", current.lmtp_listen)):
            if listen:
                checks[name] = _listener_check(listen)
    healthy = all(ok for ok, _ in checks.values())
    if as_json:
        print_json(
            {
                "healthy": healthy,
                "checks": {name: {"ok": ok, "detail": d} for name, (ok, d) in checks.items()},
            }
        )
    else:
        for name, (ok, detail) in checks.items():
            out.print(f"{name}: {'ok' if ok else 'FAIL'} ({detail})", markup=False)
    if not healthy:
        raise typer.Exit(1)
