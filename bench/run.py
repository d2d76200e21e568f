"""Side-by-side benchmark: bare aiosmtpd sink vs capture-server on SQLite and on PostgreSQL.

    python3 bench/run.py                 # everything: throughput, stage profile, memory
    python3 bench/run.py --quick         # a small run of the same (about 20 s)
    python3 bench/run.py --help

Prints tables, then one JSON line with every number. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import (
    LoadResult,
    PeakSampler,
    proc_status_kib,
    reset_peak,
    run_load,
    tree_cpu_seconds,
)
from mailgen import (
    attachment_for_total,
    contacts,
    dkim_key,
    dkim_signed,
    make_message,
    reps,
)

from capture_server.config import Settings

BENCH = Path(__file__).resolve().parent
HOST = "127.0.0.1"
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
MIB = 1024 * 1024
TARGETS = ("sink", "sqlite", "postgres")
MODES = ("throughput", "profile", "memory")
# The goals of issue 10.
GOAL_RATIO = 0.8
GOAL_P99_MS = 50.0
GOAL_MEMORY_MULTIPLE = 3.0
# Many huge messages at once: bounded by the daemon's memory budget (smtp/budget.py).
MEMORY_BUDGET = int(
    os.environ.get(
        "CAPTURE_BENCH_SET_MESSAGE_MEMORY_BYTES",
        Settings.model_fields["message_memory_bytes"].default,
    )
)
GOAL_BUDGET_MULTIPLE = 1.5
# The memory mode's huge loads and how the table names them.
HUGE_LOADS = {
    "huge": "",
    "huge_signed": ", DKIM-signed",
    "huge_many": ", {messages} at once",
}

Messages = list[tuple[str, bytes]]


def say(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


# -- processes --------------------------------------------------------------------------------

_children: list[subprocess.Popen[bytes]] = []
DNS_ENV: dict[str, str] = {}  # dns_nameservers/dns_port of the loopback DNS stub, once started


def start_dns_stub(workdir: Path, records: dict[str, str] | None = None) -> int:
    port = free_port()
    served = [f"{name}={text}" for name, text in (records or {}).items()]
    process = _spawn(
        [sys.executable, str(BENCH / "dnsstub.py"), f"{HOST}:{port}", *served],
        dict(os.environ),
        workdir / "dnsstub.log",
        workdir,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and process.poll() is None:
        if "dns stub on" in (workdir / "dnsstub.log").read_text(errors="replace"):
            break
        time.sleep(0.05)
    else:
        raise RuntimeError("the DNS stub did not start")
    DNS_ENV.update(
        CAPTURE_SERVER_DNS_NAMESERVERS=json.dumps([HOST]), CAPTURE_SERVER_DNS_PORT=str(port)
    )
    return port


def stop_children() -> None:
    """Terminate (then kill) every subprocess this run started; safe to call twice."""
    for process in _children:
        if process.poll() is None:
            process.terminate()
    for process in _children:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
    _children.clear()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    rcpt: str
    log_path: Path
    cleanup: list[Callable[[], None]] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        for step in reversed(self.cleanup):
            try:
                step()
            except Exception as error:
                say(f"  cleanup of {self.name} failed: {error}")

    def log_tail(self, lines: int = 20) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def _spawn(argv: list[str], env: dict[str, str], log_path: Path, cwd: Path) -> Any:
    process = subprocess.Popen(
        argv, env=env, stdout=log_path.open("wb"), stderr=subprocess.STDOUT, cwd=cwd
    )
    _children.append(process)
    return process


def _wait_ready(server: Server, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"{server.name} exited {server.process.returncode}:\n{server.log_tail()}"
            )
        try:
            with socket.create_connection((HOST, server.port), timeout=2) as sock:
                if sock.recv(512).startswith(b"220"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{server.name} did not answer on {HOST}:{server.port}")


def start_sink(workdir: Path) -> Server:
    port = free_port()
    log_path = workdir / "sink.log"
    process = _spawn(
        [sys.executable, str(BENCH / "sink.py"), f"{HOST}:{port}"],
        dict(os.environ),
        log_path,
        workdir,
    )
    server = Server("bare sink", process, port, "anyone@sink.localhost", log_path)
    _wait_ready(server)
    return server


def start_capture(
    name: str,
    database_url: str,
    folder: Path,
    concurrency: int,
    cleanup: list[Callable[[], None]],
    workers: int = 1,
) -> Server:
    from stageprof import setup_account

    folder.mkdir(parents=True, exist_ok=True)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CAPTURE_SERVER_")},
        "CAPTURE_SERVER_DATABASE_URL": database_url,
        "CAPTURE_SERVER_QUARANTINE_DIR": str(folder / "quarantine"),
        "CAPTURE_SERVER_LOG_FORMAT": "json",
        "CAPTURE_SERVER_SERVER_SECRET": "",
        "CAPTURE_SERVER_MAX_CONNECTIONS_PER_IP": str(max(50, concurrency + 10)),
        "CAPTURE_SERVER_MAX_CONNECTIONS": str(max(500, concurrency + 10)),
        **DNS_ENV,
        "CAPTURE_SERVER_WORKERS": str(workers),
        # A/B runs: CAPTURE_BENCH_SET_GROUP_COMMIT=off → CAPTURE_SERVER_GROUP_COMMIT=off
        **{
            "CAPTURE_SERVER_" + k.removeprefix("CAPTURE_BENCH_SET_"): v
            for k, v in os.environ.items()
            if k.startswith("CAPTURE_BENCH_SET_")
        },
    }
    rcpt = setup_account(
        database_url, {k: v for k, v in env.items() if k != "CAPTURE_SERVER_DATABASE_URL"}
    )
    port = free_port()
    log_path = folder / "daemon.log"
    argv = [
        sys.executable,
        "-m",
        "capture_server",
        "serve",
        "--smtp",
        f"{HOST}:{port}",
        "--lmtp",
        "",
    ]
    process = _spawn(argv, env, log_path, folder)
    server = Server(name, process, port, rcpt, log_path, cleanup)
    _wait_ready(server)
    if workers > 1:  # the greeting came from one worker: wait for all of them
        _wait_workers(server, workers)
    return server


def _wait_workers(server: Server, workers: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.log_path.read_text(errors="replace").count('"worker_ready"') >= workers:
            return
        time.sleep(0.1)
    raise RuntimeError(f"{server.name}: {workers} workers not ready:\n{server.log_tail()}")


def snapshot_code(workdir: Path, enabled: bool) -> dict[str, Any]:
    """Copy capture_server/ once, so every server and the profile of this run run the same code
    even while the working tree is being edited; subprocesses get it through PYTHONPATH."""
    info: dict[str, Any] = {"snapshot": enabled}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=BENCH.parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "capture_server"],
            cwd=BENCH.parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
        info["git_head"] = head.stdout.strip()
        info["capture_server_dirty_files"] = len(dirty.stdout.splitlines())
    if enabled:
        source = workdir / "code"
        shutil.copytree(
            BENCH.parent / "capture_server",
            source / "capture_server",
            ignore=shutil.ignore_patterns("__pycache__"),
        )
        os.environ["PYTHONPATH"] = os.pathsep.join(
            [str(source), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
        sys.path.insert(0, str(source))
    return info


# -- PostgreSQL --------------------------------------------------------------------------------


def _libpq(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def postgres_problem(admin_url: str) -> str | None:
    """None when a throw-away database can be created there, else why not."""
    try:
        import psycopg

        with psycopg.connect(_libpq(admin_url), connect_timeout=3, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except Exception as error:
        return f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error) else ''}"
    return None


def create_postgres(admin_url: str) -> tuple[str, Callable[[], None]]:
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"capture_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(_libpq(admin_url), connect_timeout=5, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(_libpq(admin_url), connect_timeout=5, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    url = make_url(admin_url).set(drivername="postgresql+psycopg", database=name)
    return url.render_as_string(hide_password=False), drop


@contextlib.contextmanager
def target_server(kind: str, args: argparse.Namespace, folder: Path) -> Iterator[Server]:
    cleanup: list[Callable[[], None]] = []
    server: Server | None = None
    try:
        if kind == "sink":
            folder.mkdir(parents=True, exist_ok=True)
            server = start_sink(folder)
        elif kind == "sqlite":
            url = f"sqlite:///{folder / 'capture.db'}"
            server = start_capture(
                "capture-server SQLite", url, folder, args.concurrency, cleanup, args.workers
            )
        else:
            url, drop = create_postgres(args.postgres_url)
            cleanup.append(drop)
            server = start_capture(
                "capture-server PostgreSQL", url, folder, args.concurrency, cleanup, args.workers
            )
        yield server
    finally:
        if server is not None:
            server.stop()
        else:
            for step in reversed(cleanup):
                with contextlib.suppress(Exception):
                    step()


# -- the load ----------------------------------------------------------------------------------


def build_messages(
    first: int, count: int, run_id: str, people: Any, size: int, attachment: int = 0
) -> Messages:
    team = reps()
    return [
        (team[i % len(team)].address, make_message(i, run_id, people, size, attachment))
        for i in range(first, first + count)
    ]


def summarise(result: LoadResult, size: int) -> dict[str, Any]:
    return {
        "size_bytes": size,
        "attempted": result.attempted,
        "ok": result.ok,
        "elapsed_s": round(result.elapsed, 3),
        "msgs_per_s": round(result.rate, 1),
        "mb_per_s": round(result.bytes_sent / result.elapsed / 1e6, 2) if result.elapsed else 0,
        "p50_ms": round(result.percentile(0.50) * 1000, 2),
        "p90_ms": round(result.percentile(0.90) * 1000, 2),
        "p99_ms": round(result.percentile(0.99) * 1000, 2),
        "max_ms": round(max(result.latencies, default=float("nan")) * 1000, 2),
        "replies": dict(result.replies),
    }


async def timed_load(
    server: Server, warm: Messages, timed: Messages, concurrency: int, duration: float
) -> dict[str, Any]:
    if warm:
        await run_load(
            HOST, server.port, server.rcpt, warm, concurrency=concurrency, duration=duration
        )
    before = proc_status_kib(server.pid)
    exact = reset_peak(server.pid)
    cpu_before = tree_cpu_seconds(server.pid)
    with PeakSampler(server.pid) as sampler:
        result = await run_load(
            HOST, server.port, server.rcpt, timed, concurrency=concurrency, duration=duration
        )
    cpu = tree_cpu_seconds(server.pid) - cpu_before
    after = proc_status_kib(server.pid)
    peak = max(sampler.peak_kib, after.get("VmHWM", 0) if exact else 0)
    summary = summarise(result, len(timed[0][1]) if timed else 0)
    summary.update(
        concurrency=concurrency,
        rss_before_mib=round(before.get("VmRSS", 0) / 1024, 1),
        rss_after_mib=round(after.get("VmRSS", 0) / 1024, 1),
        peak_rss_mib=round(peak / 1024, 1),
        cpu_ms_per_msg=round(cpu * 1000 / result.ok, 2) if result.ok else None,
    )
    return summary


async def memory_check(
    server: Server,
    leak: tuple[Messages, Messages],
    huge: dict[str, Messages],
    duration: float,
) -> dict[str, Any]:
    first, rest = leak
    out: dict[str, Any] = {}
    # Leak check: RSS after N sequential small messages vs after M (one session, as an MTA).
    one = await run_load(HOST, server.port, server.rcpt, first, concurrency=1, duration=duration)
    rss_first = proc_status_kib(server.pid)["VmRSS"]
    two = await run_load(HOST, server.port, server.rcpt, rest, concurrency=1, duration=duration)
    rss_total = proc_status_kib(server.pid)["VmRSS"]
    sent = len(first) + len(rest)
    out["leak"] = {
        f"rss_after_{len(first)}_mib": round(rss_first / 1024, 1),
        f"rss_after_{sent}_mib": round(rss_total / 1024, 1),
        "growth_kib": rss_total - rss_first,
        "growth_kib_per_message": round((rss_total - rss_first) / max(1, len(rest)), 2),
        "ok": one.ok + two.ok,
        "replies": dict(one.replies + two.replies),
        "small_sent": sent,
        "small_first": len(first),
    }
    # One huge message (unsigned, then DKIM-signed): peak RSS over the baseline, as a
    # multiple of its size; then many at once (smtp/budget.py bounds them).
    for label, messages in huge.items():
        out[label] = await huge_peak(server, messages, duration)
    return out


async def huge_peak(server: Server, huge: Messages, duration: float) -> dict[str, Any]:
    """Peak RSS while `huge` is sent, all messages at once; x size is of one message."""
    size = len(huge[0][1])
    baseline = proc_status_kib(server.pid)["VmRSS"]
    exact = reset_peak(server.pid)
    with PeakSampler(server.pid, interval=0.005) as sampler:
        result = await run_load(
            HOST, server.port, server.rcpt, huge, concurrency=len(huge), duration=duration
        )
    await asyncio.sleep(0.2)
    status = proc_status_kib(server.pid)
    peak = max(sampler.peak_kib, status.get("VmHWM", 0) if exact else 0)
    return {
        "size_mib": round(size / MIB, 1),
        "baseline_rss_mib": round(baseline / 1024, 1),
        "peak_rss_mib": round(peak / 1024, 1),
        "rss_after_mib": round(status["VmRSS"] / 1024, 1),
        "peak_over_baseline_mib": round((peak - baseline) / 1024, 1),
        "multiple_of_size": round((peak - baseline) * 1024 / size, 2),
        "peak_from": "VmHWM after clear_refs" if exact else "VmRSS sampled every 5 ms",
        "latency_s": round(max(result.latencies), 2) if result.latencies else None,
        "replies": dict(result.replies),
        "messages": len(huge),
        "budget_mib": round(MEMORY_BUDGET / MIB, 1),
        "multiple_of_budget": round((peak - baseline) * 1024 / MEMORY_BUDGET, 2),
    }


# -- output ------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) // 1024
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "mem_total_mib": memory,
        "python": platform.python_version(),
        # Servers' loop (sink and capture-server alike); the load generator keeps asyncio's.
        "event_loop": "asyncio"
        if os.environ.get("CAPTURE_BENCH_SET_EVENT_LOOP") == "asyncio"
        or importlib.util.find_spec("uvloop") is None
        else "uvloop",
        "kernel": platform.release(),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }


def table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    cells = [row + [""] * (len(headers) - len(row)) for row in cells]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        lines.append(
            "  ".join(
                c.rjust(w) if i else c.ljust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def stage_rows(times: dict[str, list[float]]) -> list[list[Any]]:
    totals = ("CaptureService.capture", "per message (RCPT + evidence + capture)")
    parts = [k for k in times if k not in totals]
    total = sum(sum(times[k]) for k in parts)
    rows = []
    for key, values in times.items():
        if not values:
            continue
        ordered = sorted(values)
        mean = sum(values) / len(values)
        p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
        share = f"{sum(values) / total * 100:.1f}%" if key in parts and total else ""
        rows.append([key, len(values), f"{mean * 1000:.3f}", f"{p99 * 1000:.3f}", share])
    return rows


def stage_json(times: dict[str, list[float]]) -> dict[str, Any]:
    out = {}
    for key, values in times.items():
        if values:
            ordered = sorted(values)
            out[key] = {
                "n": len(values),
                "mean_ms": round(sum(values) / len(values) * 1000, 4),
                "p99_ms": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000, 4),
            }
    return out


# -- main --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--targets", default=",".join(TARGETS), help="comma list of " + ",".join(TARGETS)
    )
    parser.add_argument("--mode", default=",".join(MODES), help="comma list of " + ",".join(MODES))
    parser.add_argument("--quick", action="store_true", help="small counts (a smoke run)")
    parser.add_argument("--concurrency", type=int, default=20, help="SMTP sessions (20)")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="capture-server worker processes (setting workers, 1); RSS is the supervisor's",
    )
    parser.add_argument("--count", type=int, default=3000, help="10 kB messages per target (3000)")
    parser.add_argument("--duration", type=float, default=30.0, help="cap per load run, s (30)")
    parser.add_argument("--size", type=int, default=10_000, help="small message bytes (10000)")
    parser.add_argument("--big-size", type=int, default=1_000_000, help="big message bytes (1 MB)")
    parser.add_argument("--big-count", type=int, default=100, help="big messages per target (100)")
    parser.add_argument(
        "--memory-size", type=int, default=50 * MIB, help="huge message bytes (50 MiB)"
    )
    parser.add_argument("--leak", default="100,1000", help="RSS after N and after M small messages")
    parser.add_argument(
        "--huge-concurrency", type=int, default=20, help="huge messages sent at once (20)"
    )
    parser.add_argument(
        "--profile-count", type=int, default=400, help="messages in the stage profile"
    )
    parser.add_argument("--contacts", type=int, default=300, help="distinct external contacts")
    parser.add_argument("--domains", type=int, default=36, help="their company domains")
    parser.add_argument(
        "--postgres-url", default=os.environ.get("CAPTURE_BENCH_POSTGRES_URL", DEFAULT_POSTGRES)
    )
    parser.add_argument("--workdir", type=Path, default=None, help="keep databases and logs here")
    parser.add_argument(
        "--no-snapshot",
        dest="snapshot",
        action="store_false",
        help="run the working tree as it changes (default: a copy taken at start)",
    )
    parser.add_argument(
        "--py-spy",
        action="store_true",
        help="sample the servers with py-spy during the 10 kB run (pip install py-spy)",
    )
    parser.add_argument("--json-out", type=Path, default=None, help="also write the JSON line here")
    args = parser.parse_args(argv)
    if args.quick:
        args.count = min(args.count, 300)
        args.duration = min(args.duration, 8.0)
        args.big_count = min(args.big_count, 12)
        args.memory_size = min(args.memory_size, 5 * MIB)
        args.huge_concurrency = min(args.huge_concurrency, 4)
        args.leak = "50,200"
        args.profile_count = min(args.profile_count, 60)
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    args.mode = [m.strip() for m in args.mode.split(",") if m.strip()]
    for value, allowed in ((args.targets, TARGETS), (args.mode, MODES)):
        unknown = set(value) - set(allowed)
        if unknown:
            parser.error(f"unknown {sorted(unknown)}; choose from {allowed}")
    if not 1 <= args.concurrency <= 1000 or args.count < 1 or args.duration <= 0:
        parser.error("concurrency 1-1000, count ≥ 1, duration > 0")
    if not 1 <= args.workers <= 64:
        parser.error("workers 1-64")
    return args


def start_py_spy(pid: int, out: Path) -> subprocess.Popen[bytes] | None:
    """Sample the server with py-spy (if installed) until stop_py_spy; raw collapsed stacks."""
    exe = shutil.which("py-spy")
    if exe is None:
        return None
    argv = [
        exe,
        "record",
        "--pid",
        str(pid),
        "--rate",
        "250",
        "--format",
        "raw",
        "--output",
        str(out),
        "--nonblocking",
        "--gil",  # only the thread holding the GIL: where the CPU of Python code goes
    ]
    process = _spawn(argv, dict(os.environ), out.with_suffix(".log"), out.parent)
    time.sleep(1.0)  # let it attach before the load starts
    return process


def stop_py_spy(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def py_spy_summary(path: Path, top: int = 22) -> dict[str, Any] | None:
    """Inclusive share of the sampled CPU per function (capture_server and the libraries)."""
    if not path.exists():
        return None
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = []
        for frame in stack.split(";"):
            name, _, where = frame.partition(" (")
            file = where.rsplit(":", 1)[0]
            short = file.split("site-packages/")[-1].split("/code/")[-1].split("/lib/python3")[-1]
            frames.append(f"{name} ({short.lstrip('/')})")
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + count
        if frames:
            own[frames[-1]] = own.get(frames[-1], 0) + count
    if not total:
        return None

    def ranked(table: dict[str, int]) -> list[tuple[str, float]]:
        best = sorted(table.items(), key=lambda item: -item[1])[:top]
        return [(name, round(count / total * 100, 1)) for name, count in best]

    ours = {k: v for k, v in inclusive.items() if "capture_server/" in k}
    return {"samples": total, "inclusive_capture_server": ranked(ours), "self": ranked(own)}


async def throughput(
    args: argparse.Namespace, workdir: Path, results: dict[str, Any], load: dict[str, Messages]
) -> None:
    for kind in args.targets:
        say(f"== throughput: {kind}")
        try:
            with target_server(kind, args, workdir / f"load-{kind}") as server:
                entry: dict[str, Any] = {"name": server.name}
                say(f"  10 kB x {len(load['small'])}, {args.concurrency} sessions")
                spy = None
                if args.py_spy and kind != "sink":
                    spy = start_py_spy(server.pid, workdir / f"py-spy-{kind}.txt")
                try:
                    entry["small"] = await timed_load(
                        server, load["small_warm"], load["small"], args.concurrency, args.duration
                    )
                finally:
                    stop_py_spy(spy)
                if spy is not None:
                    entry["py_spy"] = py_spy_summary(workdir / f"py-spy-{kind}.txt")
                say(f"  1 MB x {len(load['big'])}, {args.concurrency} sessions")
                entry["big"] = await timed_load(
                    server, load["big_warm"], load["big"], args.concurrency, args.duration
                )
                entry["peak_rss_since_start_mib"] = round(
                    proc_status_kib(server.pid).get("VmHWM", 0) / 1024, 1
                )
                if server.process.poll() is not None:
                    entry["error"] = f"exited {server.process.returncode}"
                results[kind] = entry
        except Exception as error:
            say(f"  {kind} failed: {error}")
            results[kind] = {"error": f"{type(error).__name__}: {error}"[:2000]}


async def memory(
    args: argparse.Namespace, workdir: Path, results: dict[str, Any], load: dict[str, Messages]
) -> None:
    for kind in args.targets:
        say(f"== memory: {kind}")
        try:
            with target_server(kind, args, workdir / f"memory-{kind}") as server:
                await run_load(
                    HOST,
                    server.port,
                    server.rcpt,
                    load["small_warm"][:20],
                    concurrency=1,
                    duration=60,
                )
                results[kind] = await memory_check(
                    server,
                    (load["leak_first"], load["leak_rest"]),
                    {key: load[key] for key in HUGE_LOADS},
                    duration=max(120.0, args.duration),
                )
        except Exception as error:
            say(f"  {kind} failed: {error}")
            results[kind] = {"error": f"{type(error).__name__}: {error}"[:2000]}


def run_profiles(
    args: argparse.Namespace,
    workdir: Path,
    results: dict[str, Any],
    load: dict[str, Messages],
    run_id: str,
    people: Any,
) -> None:
    from stageprof import profile

    count = args.profile_count
    sets = {
        "10kB": build_messages(200_000, count, run_id, people, args.size),
        "1MB": load["big_warm"] + load["big"][: max(12, count // 20)],
    }
    for kind in [k for k in args.targets if k != "sink"]:
        for label, messages in sets.items():
            say(f"== stage profile: {kind}, {label} x {len(messages)}")
            folder = workdir / f"profile-{kind}-{label}"
            folder.mkdir(parents=True, exist_ok=True)
            drop: Callable[[], None] | None = None
            try:
                if kind == "sqlite":
                    url = f"sqlite:///{folder / 'profile.db'}"
                else:
                    url, drop = create_postgres(args.postgres_url)
                dns = {}
                if DNS_ENV:
                    dns = {
                        "dns_nameservers": (HOST,),
                        "dns_port": int(DNS_ENV["CAPTURE_SERVER_DNS_PORT"]),
                    }
                times, outcomes = profile(
                    url, folder, messages, dns, warmup=min(10, len(messages) // 5)
                )
                results[f"{kind}/{label}"] = {"times": times, "outcomes": outcomes}
            except Exception as error:
                say(f"  profile {kind} {label} failed: {error}")
                results[f"{kind}/{label}"] = {"error": f"{type(error).__name__}: {error}"[:2000]}
            finally:
                if drop is not None:
                    with contextlib.suppress(Exception):
                        drop()


def report(args: argparse.Namespace, data: dict[str, Any]) -> None:
    load = data.get("throughput", {})
    print()
    print(
        f"machine: {data['machine']['nproc']} CPU ({data['machine']['cpu']}), "
        f"{data['machine']['mem_total_mib']} MiB, load {data['machine']['loadavg_start']} "
        f"→ {data['machine'].get('loadavg_end')}, event loop {data['machine'].get('event_loop')}"
    )
    if load:
        rows = []
        for kind, entry in load.items():
            for label in ("small", "big"):
                run = entry.get(label)
                if not run:
                    rows.append([kind, label, "error: " + entry.get("error", "?")[:60]])
                    continue
                rows.append(
                    [
                        entry["name"],
                        f"{run['size_bytes'] / 1000:.0f} kB",
                        run["concurrency"],
                        f"{run['ok']}/{run['attempted']}",
                        run["msgs_per_s"],
                        run["mb_per_s"],
                        run["p50_ms"],
                        run["p99_ms"],
                        run["max_ms"],
                        run["peak_rss_mib"],
                        run.get("cpu_ms_per_msg"),
                        ", ".join(f"{k}: {v}" for k, v in sorted(run["replies"].items())),
                    ]
                )
        print("\nThroughput (latency: DATA command sent → final reply; RSS: server process)")
        print(
            table(
                [
                    "target",
                    "size",
                    "sess",
                    "ok/sent",
                    "msg/s",
                    "MB/s",
                    "p50 ms",
                    "p99 ms",
                    "max ms",
                    "peak RSS MiB",
                    "CPU ms/msg",
                    "replies",
                ],
                rows,
            )
        )
        ratios = data.get("ratios", {})
        for key, value in ratios.items():
            print(f"  ratio {key}: {value}")
        for key, value in data.get("cpu_ratios", {}).items():
            print(f"  CPU a message {key}: {value}x")
    for key, prof in data.get("profile", {}).items():
        if "times" not in prof:
            print(f"\nStage profile {key}: {prof.get('error')}")
            continue
        print(
            f"\nStage profile {key} (in-process, one message at a time; ms; share of per message)"
        )
        print(table(["step", "n", "mean", "p99", "share"], stage_rows(prof["times"])))
        print("  outcomes:", prof["outcomes"])
    for entry in load.values():
        spy = entry.get("py_spy")
        if not spy:
            continue
        print(
            f"\npy-spy on {entry['name']} during the 10 kB run ({spy['samples']} samples, "
            "% of on-CPU samples; warm-up included)"
        )
        rows = [[name, f"{share}%"] for name, share in spy["inclusive_capture_server"]]
        print(table(["capture_server function (inclusive)", "share"], rows))
        rows = [[name, f"{share}%"] for name, share in spy["self"]]
        print(table(["function (self)", "share"], rows))
    mem = data.get("memory", {})
    if mem:
        rows = []
        for kind, entry in mem.items():
            if "error" in entry:
                rows.append([kind, "error: " + entry["error"][:80]])
                continue
            leak = entry["leak"]
            first, total = leak["small_first"], leak["small_sent"]
            for label, description in HUGE_LOADS.items():
                huge = entry.get(label)
                if huge is None:
                    continue
                rows.append(
                    [
                        kind + description.format(**huge),
                        huge["size_mib"],
                        huge["baseline_rss_mib"],
                        huge["peak_rss_mib"],
                        huge["multiple_of_size"],
                        huge["latency_s"],
                        ",".join(f"{k}:{v}" for k, v in huge["replies"].items()),
                        leak[f"rss_after_{first}_mib"],
                        leak[f"rss_after_{total}_mib"],
                        leak["growth_kib_per_message"],
                    ]
                )
        print(
            "\nMemory (huge: one message, then several at once; x size: peak growth over one"
            "\nmessage's size; leak: sequential small messages over one session)"
        )
        first = next((e["leak"]["small_first"] for e in mem.values() if "leak" in e), 0)
        total = next((e["leak"]["small_sent"] for e in mem.values() if "leak" in e), 0)
        print(
            table(
                [
                    "target",
                    "msg MiB",
                    "base MiB",
                    "peak MiB",
                    "x size",
                    "secs",
                    "reply",
                    f"RSS@{first}",
                    f"RSS@{total}",
                    "KiB/msg",
                ],
                rows,
            )
        )
    goals = data.get("goals", {})
    if goals:
        print("\nGoals of issue 10:")
        for key, value in goals.items():
            print(f"  {key}: {value}")


def goals(data: dict[str, Any]) -> dict[str, str]:
    out = {}
    ratio = data.get("ratios", {}).get("sqlite/sink 10kB")
    if ratio is not None:
        out["SQLite >= 0.8x bare sink msg/s (10 kB, sessions as run)"] = (
            f"{ratio} -> {'PASS' if ratio >= GOAL_RATIO else 'FAIL'}"
        )
    for kind in ("sqlite", "postgres"):
        small = data.get("throughput", {}).get(kind, {}).get("small")
        if small:
            p99 = small["p99_ms"]
            out[f"{kind} p99 <= 50 ms (10 kB)"] = (
                f"{p99} ms -> {'PASS' if p99 <= GOAL_P99_MS else 'FAIL'}"
            )
        for label, name in (("huge", "huge message"), ("huge_signed", "huge signed message")):
            huge = data.get("memory", {}).get(kind, {}).get(label)
            if huge:
                multiple = huge["multiple_of_size"]
                out[f"{kind} {name} peak <= 3x size"] = (
                    f"{multiple}x -> {'PASS' if multiple <= GOAL_MEMORY_MULTIPLE else 'FAIL'}"
                )
        many = data.get("memory", {}).get(kind, {}).get("huge_many")
        if many:
            multiple = many["multiple_of_budget"]
            logged = many["replies"].get("250 logged", 0)
            passed = multiple <= GOAL_BUDGET_MULTIPLE and logged == many["messages"]
            out[f"{kind} {many['messages']} huge messages at once: all logged, peak <= 1.5x "
                "budget"] = (
                f"{logged} logged, {many['peak_over_baseline_mib']} MiB = {multiple}x "
                f"{many['budget_mib']} MiB -> {'PASS' if passed else 'FAIL'}"
            )  # fmt: skip
    return out


async def main_async(args: argparse.Namespace, workdir: Path, data: dict[str, Any]) -> None:
    run_id = uuid.uuid4().hex[:8]
    people = contacts(args.contacts, args.domains)
    key = dkim_key()  # the account domain's DKIM key, served by the DNS stub
    say(f"generating messages (run {run_id}) ...")
    big_attachment = attachment_for_total(args.big_size)
    leak_first, leak_total = (int(x) for x in args.leak.split(","))
    load = {
        "small_warm": build_messages(
            100_000, min(100, max(20, args.count // 10)), run_id, people, args.size
        ),
        "small": build_messages(0, args.count, run_id, people, args.size),
        "big_warm": build_messages(
            110_000, min(10, args.big_count), run_id, people, 4_000, big_attachment
        ),
        "big": build_messages(120_000, args.big_count, run_id, people, 4_000, big_attachment),
    }
    if "memory" in args.mode:
        load["leak_first"] = build_messages(130_000, leak_first, run_id, people, args.size)
        load["leak_rest"] = build_messages(
            130_000 + leak_first, leak_total - leak_first, run_id, people, args.size
        )
        load["huge"] = build_messages(
            190_000, 1, run_id, people, 4_000, attachment_for_total(args.memory_size, 4_000)
        )
        # Most real mail is DKIM-signed: the same size again, signed, its key in the DNS stub.
        [(sender, unsigned)] = build_messages(
            190_001, 1, run_id, people, 4_000, attachment_for_total(args.memory_size, 4_000)
        )
        load["huge_signed"] = [(sender, dkim_signed(unsigned, key))]
        del unsigned
        attachment = attachment_for_total(args.memory_size, 4_000)
        load["huge_many"] = build_messages(
            190_100, args.huge_concurrency, run_id, people, 4_000, attachment
        )
    if set(args.targets) - {"sink"}:
        start_dns_stub(workdir, {key.dns_name: key.dns_text})
    if "postgres" in args.targets:
        problem = postgres_problem(args.postgres_url)
        if problem:
            say(f"PostgreSQL skipped: {args.postgres_url} unreachable ({problem})")
            args.targets = [t for t in args.targets if t != "postgres"]
            data["skipped"] = {"postgres": problem}
    data["settings"] = {
        "targets": args.targets,
        "mode": args.mode,
        "concurrency": args.concurrency,
        "workers": args.workers,
        "count": args.count,
        "duration_s": args.duration,
        "size": args.size,
        "big_size": len(load["big"][0][1]) if load["big"] else 0,
        "big_count": args.big_count,
        "contacts": args.contacts,
        "domains": args.domains,
        "quick": args.quick,
        "huge_size": len(load["huge"][0][1]) if "huge" in load else None,
    }
    if "throughput" in args.mode:
        data["throughput"] = {}
        await throughput(args, workdir, data["throughput"], load)
        rates = {k: v["small"]["msgs_per_s"] for k, v in data["throughput"].items() if "small" in v}
        big = {k: v["big"]["msgs_per_s"] for k, v in data["throughput"].items() if "big" in v}
        data["ratios"] = {}
        for kind in ("sqlite", "postgres"):
            if rates.get("sink") and kind in rates:
                data["ratios"][f"{kind}/sink 10kB"] = round(rates[kind] / rates["sink"], 3)
            if big.get("sink") and kind in big:
                data["ratios"][f"{kind}/sink 1MB"] = round(big[kind] / big["sink"], 3)
        # The throughput ratio is about CPU a message (both servers saturate one core): say so.
        cpu = {
            k: v["small"].get("cpu_ms_per_msg")
            for k, v in data["throughput"].items()
            if "small" in v
        }
        data["cpu_ratios"] = {
            f"{kind}/sink 10kB": round(cpu[kind] / cpu["sink"], 2)
            for kind in ("sqlite", "postgres")
            if cpu.get("sink") and cpu.get(kind)
        }
    if "memory" in args.mode:
        data["memory"] = {}
        await memory(args, workdir, data["memory"], load)
    if "profile" in args.mode:
        data["profile"] = {}
        await asyncio.to_thread(run_profiles, args, workdir, data["profile"], load, run_id, people)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="capture-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {"machine": machine(), "code": snapshot_code(workdir, args.snapshot)}

    def interrupted(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupted)
    started = time.monotonic()
    try:
        asyncio.run(main_async(args, workdir, data))
    except KeyboardInterrupt:
        say("interrupted: stopping servers")
        return 130
    finally:
        stop_children()
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    data["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    data["wall_s"] = round(time.monotonic() - started, 1)
    data["goals"] = goals(data)
    report(args, data)
    summary = dict(data)
    if "profile" in summary:
        summary["profile"] = {
            key: {"stages": stage_json(v["times"]), "outcomes": v["outcomes"]}
            if "times" in v
            else v
            for key, v in summary["profile"].items()
        }
    line = json.dumps(summary, sort_keys=True)
    print(line, flush=True)
    if args.json_out:
        args.json_out.write_text(line + "\n")
    failed = [k for k, v in data.get("throughput", {}).items() if "error" in v]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
