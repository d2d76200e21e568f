"""Container health check: the daemon's LMTP (else SMTP) listener greets with 220.

Standard library only. Reads the listener from CAPTURE_SERVER_LMTP_LISTEN (or
CAPTURE_SERVER_SMTP_LISTEN when LMTP is off), connects, expects a 220 greeting, says
QUIT, and exits 0; exits 1 with the reason on standard error otherwise. A wildcard listen
address (0.0.0.0, ::) is checked on loopback.

    python3 deploy/healthcheck.py            # the Dockerfile's HEALTHCHECK
"""

from __future__ import annotations

import os
import socket
import sys

TIMEOUT = 5.0
WILDCARDS = {"", "0.0.0.0", "::", "*"}  # noqa: S104 - listen addresses, mapped to loopback


def target() -> tuple[str, int]:
    listen = os.environ.get("CAPTURE_SERVER_LMTP_LISTEN", "127.0.0.1:2424")
    if not listen:
        listen = os.environ.get("CAPTURE_SERVER_SMTP_LISTEN", "127.0.0.1:2525")
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if host in WILDCARDS:
        host = "::1" if ":" in host else "127.0.0.1"
    return host, int(port)


def check(host: str, port: int) -> str:
    with socket.create_connection((host, port), timeout=TIMEOUT) as sock:
        sock.settimeout(TIMEOUT)
        greeting = sock.makefile("rb").readline(1024).decode("ascii", "replace").strip()
        if not greeting.startswith("220"):
            raise OSError(f"unexpected greeting {greeting!r}")
        sock.sendall(b"QUIT\r\n")
        return greeting


def main() -> int:
    try:
        host, port = target()
        greeting = check(host, port)
    except (OSError, ValueError) as error:
        print(f"unhealthy: {error}", file=sys.stderr)
        return 1
    print(f"healthy: {host}:{port} {greeting}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
