"""Peak memory of the parse stage per message shape (issue 10: memory).

For each shape a message of about --size-mib MiB is built, written to a temporary file, and a
fresh interpreter runs the real parse stage on it the way the daemon does (parse_stage on a
Work holding the CapturedMessage; --pipeline: the whole run_pipeline, stages as in the daemon,
no store). The child reads the file (the received bytes, not counted), resets its peak RSS
(/proc/self/clear_refs), runs the stage and reports VmHWM - VmRSS before: the ratio printed is
that growth over the message size. "lean" counts the attachments left in the received bytes.

    python3 bench/memshapes.py                      # every shape, 30 MiB
    python3 bench/memshapes.py --size-mib 10 --shapes b64-attachment,rfc822-attachment
"""

from __future__ import annotations

import argparse
import base64
import gc
import json
import os
import quopri
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HEAD = (
    "From: Rita Rep <rita@acme.test>\r\n"
    "To: Carl Customer <carl@globex.test>\r\n"
    "Subject: The offer\r\n"
    "Date: Tue, 03 Nov 2026 09:15:00 +0000\r\n"
    "Message-ID: <offer-{n}@mail.acme.test>\r\n"
    "MIME-Version: 1.0\r\n"
)
TEXT = 'Content-Type: text/plain; charset="utf-8"\r\n\r\nHi Carl,\r\n\r\nthe offer.\r\n\r\nRita'
WORDS = ["offer", "price", "delivery", "Grüße", "Angebot", "señor", "€100", "renewal", "naïve"]


def _lines(text: bytes, width: int = 76) -> bytes:
    return b"\r\n".join(text[i : i + width] for i in range(0, len(text), width))


def _b64(data: bytes) -> bytes:
    return _lines(base64.b64encode(data))


def _mixed(*parts: bytes, boundary: bytes = b"mix") -> bytes:
    body = b"".join(b"--" + boundary + b"\r\n" + part + b"\r\n" for part in parts)
    head = b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\r\n\r\n'
    return head + body + b"--" + boundary + b"--\r\n"


def _attachment(text: bytes, cte: str, kind: str = "application/pdf", name: str = "a.pdf") -> bytes:
    return (
        f'Content-Type: {kind}; name="{name}"\r\n'
        f'Content-Disposition: attachment; filename="{name}"\r\n'
        f"Content-Transfer-Encoding: {cte}\r\n\r\n"
    ).encode() + text


def _prose(size: int) -> bytes:
    """About `size` bytes of UTF-8 text lines (some non-ASCII)."""
    rnd = random.Random(3)
    block = "\n".join(" ".join(rnd.choices(WORDS, k=12)) for _ in range(2000)).encode()
    return (block * (size // len(block) + 1))[:size].rsplit(b"\n", 1)[0] + b"\n"


def _head(n: int) -> bytes:
    return HEAD.format(n=n).encode()


def b64_attachment(size: int) -> bytes:
    data = random.Random(1).randbytes(size * 3 // 4 * 76 // 78)
    return _head(1) + _mixed(TEXT.encode(), _attachment(_b64(data), "base64"))


def rfc822_attachment(size: int) -> bytes:
    data = random.Random(2).randbytes(size * 3 // 4 * 76 // 78)
    inner = _head(2) + _mixed(TEXT.encode(), _attachment(_b64(data), "base64"), boundary=b"fwd")
    forward = b"Content-Type: message/rfc822\r\n\r\n" + inner
    return _head(3).replace(b"Subject: ", b"Subject: Fwd: ") + _mixed(TEXT.encode(), forward)


def _b64_text(size: int, subtype: str) -> bytes:
    text = _prose(size * 3 // 4 * 76 // 78)
    if subtype == "html":
        text = b"<html><body><p>" + text.replace(b"\n", b"</p>\n<p>") + b"</p></body></html>"
    head = f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
    body = (head + "Content-Transfer-Encoding: base64\r\n\r\n").encode() + _b64(text)
    small = _attachment(_b64(b"%PDF-1.4 small"), "base64")
    return _head(4) + _mixed(body, small)


def b64_text_plain(size: int) -> bytes:
    return _b64_text(size, "plain")


def b64_text_html(size: int) -> bytes:
    return _b64_text(size, "html")


def qp_attachment(size: int) -> bytes:
    text = _prose(size * 9 // 10).replace(b"\n", b"\r\n")
    return _head(5) + _mixed(
        TEXT.encode(),
        _attachment(quopri.encodestring(text), "quoted-printable", "text/csv", "a.csv"),
    )


def sevenbit_attachment(size: int) -> bytes:
    text = _prose(size).decode().encode("ascii", "replace").replace(b"\n", b"\r\n")
    return _head(6) + _mixed(TEXT.encode(), _attachment(text, "7bit", "text/csv", "a.csv"))


SHAPES: dict[str, Callable[[int], bytes]] = {
    "b64-attachment": b64_attachment,  # the baseline: already cut (bodies.py)
    "rfc822-attachment": rfc822_attachment,  # 1: a forward as attachment with a big file
    "b64-text-plain": b64_text_plain,  # 2: a big base64 text body
    "b64-text-html": b64_text_html,  # 2, html
    "qp-attachment": qp_attachment,  # 3
    "7bit-attachment": sevenbit_attachment,  # 3
}


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise LookupError(field)


def measure(path: Path, kind: str, pipeline: bool) -> dict[str, Any]:
    """In the child: the peak RSS growth of the parse stage (or the pipeline) on one message."""
    from datetime import UTC, datetime

    from capture_server.pipeline import STAGES, run_pipeline
    from capture_server.pipeline.bodies import EncodedBody
    from capture_server.pipeline.defaults import FREE_MAIL_DOMAINS, ROLE_LOCAL_PARTS
    from capture_server.pipeline.message import (
        AccountRules,
        AccountSnapshot,
        AddressKind,
        CapturedMessage,
        CaptureTarget,
        Envelope,
        Kind,
        SharingLevel,
        UserAddress,
        UserInfo,
        Work,
    )
    from capture_server.pipeline.parse import parse_stage

    rules = AccountRules(role_local_parts=ROLE_LOCAL_PARTS, free_mail_domains=FREE_MAIL_DOMAINS)
    snapshot = AccountSnapshot(
        account_id=7,
        slug="acme",
        domains=frozenset({"acme.test"}),
        users={1: UserInfo(1, "rita@acme.test", None, SharingLevel.EVERYTHING)},
        addresses={"rita@acme.test": (UserAddress(1, AddressKind.LOGIN),)},
        fallback_owner_id=None,
        never_log=frozenset(),
        tombstones=frozenset(),
        rules=rules,
    )
    target = Kind(kind)
    envelope = Envelope(
        "rita@acme.test", f"acme-{kind}@capture.localhost", "test", datetime.now(UTC)
    )
    raw = path.read_bytes()
    message = CapturedMessage(envelope, CaptureTarget(7, "acme", target), raw)
    gc.collect()
    before = _status("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
        reset = True
    except OSError:
        reset = False
    started = time.perf_counter()
    lean = attachments = -1
    if pipeline:
        decision = run_pipeline(message, snapshot, STAGES)
        outcome = f"{decision.action.value}/{decision.reason.value}"
    else:
        result = parse_stage(Work(message=message, snapshot=snapshot))
        outcome = type(result).__name__
        parsed = getattr(result, "parsed", None)
        if parsed is not None:
            found = parsed.email.attachments
            attachments = len(found)
            lean = sum(isinstance(a.body, EncodedBody) for a in found)
    seconds = time.perf_counter() - started
    peak = _status("VmHWM")
    return {
        "size": len(raw),
        "growth": peak - before,
        "seconds": seconds,
        "reset": reset,
        "outcome": outcome,
        "attachments": attachments,
        "lean": lean,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=float, default=30.0)
    parser.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated")
    parser.add_argument("--kind", default="bcc", choices=["bcc", "forward", "reply"])
    parser.add_argument("--pipeline", action="store_true", help="run every stage, not parse")
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # the child
    args = parser.parse_args()
    if args.measure is not None:
        print(json.dumps(measure(args.measure, args.kind, args.pipeline)))
        return
    size = int(args.size_mib * 1024 * 1024)
    root = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
    }
    rows: list[dict[str, Any]] = []
    print(f"{'shape':<20} {'MiB':>6} {'peak MiB':>9} {'ratio':>6} {'s':>6}  lean/att  outcome")
    with tempfile.TemporaryDirectory(prefix="memshapes-") as folder:
        for name in args.shapes.split(","):
            path = Path(folder) / f"{name}.eml"
            path.write_bytes(SHAPES[name](size))
            command = [sys.executable, __file__, "--measure", str(path), "--kind", args.kind]
            if args.pipeline:
                command.append("--pipeline")
            done = subprocess.run(
                command, env=env, capture_output=True, text=True, timeout=600, check=False
            )
            path.unlink()
            if done.returncode != 0:
                print(f"{name:<20} failed: {done.stderr.strip().splitlines()[-1:]}")
                continue
            row = {"shape": name, **json.loads(done.stdout)}
            row["ratio"] = row["growth"] / row["size"]
            rows.append(row)
            mib = 1024 * 1024
            print(
                f"{name:<20} {row['size'] / mib:>6.1f} {row['growth'] / mib:>9.1f} "
                f"{row['ratio']:>6.2f} {row['seconds']:>6.2f}  "
                f"{row['lean']:>4}/{row['attachments']:<3}  {row['outcome']}"
                + ("" if row["reset"] else "  (peak not reset)")
            )
    if args.json_out:
        args.json_out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
