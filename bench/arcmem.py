"""Peak memory of ARC verification on a big message (issue 10).

Builds a message of ``--size-mib`` MiB (a base64 attachment), DKIM-signs it, adds an
Authentication-Results header and ARC-seals it with dkimpy (a fresh RSA key), then, each in a
fresh subprocess, measures how much the peak RSS (VmHWM in /proc/self/status) grows while

- ``check_arc``: capture_server.authentication.checks.check_arc runs alone;
- ``verify_message``: the daemon's whole verification of the message (SPF, DKIM, ARC, DMARC)
  runs, as capture.py calls it.

Both are run on the default path (big messages streamed where the code streams them) and with
streaming turned off (``dkimpy``: dkimpy's whole-message verification).  The key is served by
the tests' loopback zone server (tests/authentication/zoneserver.py) in a thread of the child.
The message itself is in memory before the first reading: ratio = growth / size.

Usage, from the repository root: python3 bench/arcmem.py [--size-mib 30] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from mailgen import rsa_key_pair  # noqa: E402 (after the path)

DOMAIN = "example.com"
SELECTOR = "arcsel"
SRV_ID = "mx.example.net"
MODES = ("check_arc", "verify_message")
PATHS = ("default", "dkimpy")


def vm_hwm() -> int:
    """Peak resident set size of this process so far, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def build_message(size: int, pem: bytes) -> bytes:
    """A DKIM-signed, ARC-sealed multipart message of about ``size`` bytes."""
    import dkim

    rng = random.Random(10)
    lines = base64.encodebytes(rng.randbytes(size * 3 // 4)).replace(b"\n", b"\r\n")
    head = (
        f"From: Rep <rep@{DOMAIN}>\r\n"
        "To: Customer <buyer@customer.test>\r\n"
        "Subject: The big proposal\r\n"
        "Date: Tue, 07 May 2024 10:00:00 +0000\r\n"
        f"Message-ID: <big-arc@{DOMAIN}>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b1"\r\n'
        "\r\n"
    ).encode()
    body = (
        b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe proposal is attached.\r\n"
        b"--b1\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"
        b'Content-Disposition: attachment; filename="proposal.pdf"\r\n\r\n' + lines + b"--b1--\r\n"
    )
    raw = head + body
    del lines, body
    signature = dkim.sign(
        raw,
        SELECTOR.encode(),
        DOMAIN.encode(),
        pem,
        canonicalize=(b"relaxed", b"relaxed"),
        include_headers=[b"from", b"to", b"subject", b"date", b"message-id"],
    )
    raw = bytes(signature) + raw
    ar = f"Authentication-Results: {SRV_ID}; dkim=pass header.d={DOMAIN}\r\n".encode()
    raw = ar + raw
    arc_set = dkim.arc_sign(
        raw, SELECTOR.encode(), DOMAIN.encode(), pem, SRV_ID.encode(), timestamp=1715076000
    )
    if not arc_set:
        raise RuntimeError("dkimpy did not ARC-seal the message")
    return b"".join(arc_set) + raw


# ----------------------------------------------------------------------------- child


def child(mode: str, path: str, message_file: str, record: str) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from capture_server.authentication import DnsConfig, checks, verify_message
    from capture_server.authentication.dnsclient import Resolver
    from tests.authentication.zoneserver import ZoneServer

    if path == "dkimpy":  # nothing is big enough to stream
        checks.DKIM_STREAM_THRESHOLD = checks.ARC_STREAM_THRESHOLD = 1 << 62

    zone = ZoneServer().start()
    zone.txt(f"{SELECTOR}._domainkey.{DOMAIN}", record)
    config = DnsConfig(nameservers=("127.0.0.1",), port=zone.port, timeout=10.0)

    def run(raw: bytes) -> list[tuple[str, str, str]]:
        if mode == "check_arc":
            r = checks.check_arc(raw, Resolver(config))
            return [(r.method, r.result, r.detail)]
        results = asyncio.run(
            verify_message(
                raw,
                mail_from=f"rep@{DOMAIN}",
                helo="mail.example.com",
                client_ip="192.0.2.10",
                authserv_id="capture.test",
                dns=config,
            )
        )
        return [(m.method, m.result, m.detail) for m in results.methods]

    try:
        raw = Path(message_file).read_bytes()
        pem, _ = rsa_key_pair()  # warm-up: same code, a small message (imports, threads, DNS)
        run(build_message(64 * 1024, pem).replace(b"rep@", b"warm@"))
        before = vm_hwm()
        results = run(raw)
        after = vm_hwm()
    finally:
        zone.stop()
    return {
        "mode": mode,
        "path": path,
        "size": len(raw),
        "growth": after - before,
        "ratio": round((after - before) / len(raw), 2),
        "results": results,
    }


# ----------------------------------------------------------------------------- parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=float, default=30.0)
    parser.add_argument("--json", action="store_true", help="also print one JSON line")
    parser.add_argument("--child", nargs=4, metavar=("MODE", "PATH", "FILE", "RECORD"))
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return

    pem, record = rsa_key_pair()
    raw = build_message(int(args.size_mib * (1 << 20)), pem)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="arcmem-") as tmp:
        message_file = os.path.join(tmp, "message.eml")
        Path(message_file).write_bytes(raw)
        size = len(raw)
        del raw
        for mode in MODES:
            for path in PATHS:
                out = subprocess.run(
                    [sys.executable, __file__, "--child", mode, path, message_file, record],
                    capture_output=True,
                    text=True,
                    check=True,
                    cwd=ROOT,
                )
                rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"message: {size} bytes ({size / (1 << 20):.1f} MiB), DKIM-signed and ARC-sealed")
    print(f"{'measured':<16} {'path':<8} {'peak growth':>12} {'ratio':>6}  results")
    for row in rows:
        summary = ", ".join(f"{m}={r}" for m, r, _d in row["results"])
        print(
            f"{row['mode']:<16} {row['path']:<8} {row['growth'] / (1 << 20):>8.1f} MiB "
            f"{row['ratio']:>6.2f}  {summary}"
        )
    if args.json:
        print(json.dumps({"size": size, "rows": rows}))


if __name__ == "__main__":
    main()
