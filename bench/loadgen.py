"""Load generator (asyncio + aiosmtplib, loopback only) and /proc memory readings."""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiosmtplib

LOOPBACK = ("127.0.0.1", "::1", "localhost")


@dataclass
class LoadResult:
    attempted: int = 0
    ok: int = 0  # 250 to DATA
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, DATA command → final reply
    replies: Counter[str] = field(default_factory=Counter)
    bytes_sent: int = 0

    @property
    def rate(self) -> float:
        return self.ok / self.elapsed if self.elapsed > 0 else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def classify(code: int, text: str) -> str:
    lowered = text.lower()
    if code == 250 and "queued as" in lowered:
        return "250 logged"
    if code == 250 and "already logged" in lowered:
        return "250 duplicate"
    if code == 250 and "not logged" in lowered:
        return "250 not logged"
    if code == 250 and "held" in lowered:
        return "250 quarantined"
    return f"{code}"


async def run_load(
    host: str,
    port: int,
    rcpt: str,
    messages: list[tuple[str, bytes]],
    *,
    concurrency: int,
    duration: float,
    timeout: float = 120.0,
) -> LoadResult:
    """Send `messages` (mail_from, raw) over `concurrency` SMTP sessions, each reusing its
    connection; stops after the last message or `duration` seconds, whichever comes first."""
    if host not in LOOPBACK:
        raise ValueError("the benchmark talks to loopback only")
    result = LoadResult()
    next_index = 0
    start = time.perf_counter()
    deadline = start + duration

    async def worker() -> None:
        nonlocal next_index
        smtp: aiosmtplib.SMTP | None = None
        failures = 0
        try:
            while failures < 20:
                if next_index >= len(messages) or time.perf_counter() >= deadline:
                    return
                index = next_index
                next_index += 1
                mail_from, raw = messages[index]
                result.attempted += 1
                try:
                    if smtp is None or not smtp.is_connected:
                        smtp = aiosmtplib.SMTP(
                            hostname=host,
                            port=port,
                            timeout=timeout,
                            start_tls=False,
                            local_hostname="bench.localhost",
                        )
                        await smtp.connect()
                        await smtp.ehlo()
                    await smtp.mail(mail_from, options=[f"SIZE={len(raw)}"])
                    await smtp.rcpt(rcpt)
                    sent = time.perf_counter()
                    response = await smtp.data(raw)
                    result.latencies.append(time.perf_counter() - sent)
                    result.ok += 1
                    result.bytes_sent += len(raw)
                    result.replies[classify(response.code, response.message)] += 1
                except aiosmtplib.SMTPResponseException as error:
                    failures += 1
                    result.replies[classify(error.code, error.message)] += 1
                    if smtp is not None and smtp.is_connected:
                        try:
                            await smtp.rset()
                        except aiosmtplib.SMTPException:
                            smtp.close()
                except (aiosmtplib.SMTPException, OSError) as error:
                    failures += 1
                    result.replies[type(error).__name__] += 1
                    if smtp is not None:
                        smtp.close()
                    smtp = None
                    await asyncio.sleep(0.05)
        finally:
            if smtp is not None and smtp.is_connected:
                try:
                    await asyncio.wait_for(smtp.quit(), 5)
                except (aiosmtplib.SMTPException, OSError, TimeoutError):
                    smtp.close()

    # Hard stop well after the soft deadline, should a reply never come.
    await asyncio.wait_for(
        asyncio.gather(*(worker() for _ in range(concurrency))), duration + timeout + 30
    )
    result.elapsed = time.perf_counter() - start
    return result


# -- memory, read from /proc (psutil is not installed here) -----------------------------------


def proc_status_kib(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM (peak RSS), … of a process, in KiB."""
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key.startswith("Vm") and rest.strip().endswith("kB"):
            values[key] = int(rest.split()[0])
    return values


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its live child processes (workers), in seconds.

    A noisy shared machine changes msg/s from run to run; the server's CPU per message does
    not (much): it is the number to compare code changes by.
    """
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # gone meanwhile
        if stat.parent.name == str(pid) or fields[1] == str(pid):  # itself, or its child
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux ≥ 4.0, needs ptrace rights over the process)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class PeakSampler:
    """Polls VmRSS every few ms while a load runs: a second opinion when clear_refs fails."""

    def __init__(self, pid: int, interval: float = 0.01) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_kib = 0
        self._task: asyncio.Task[None] | None = None

    async def _poll(self) -> None:
        while True:
            try:
                self.peak_kib = max(self.peak_kib, proc_status_kib(self.pid).get("VmRSS", 0))
            except OSError:
                return
            await asyncio.sleep(self.interval)

    def __enter__(self) -> PeakSampler:
        self._task = asyncio.get_running_loop().create_task(self._poll())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
