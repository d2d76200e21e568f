"""The benchmark (bench/run.py) in its quickest forms: sink and SQLite throughput + profile,
and the memory mode on SQLite."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "run.py"


def test_bench_quick_sqlite(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable, str(BENCH), "--quick", "--targets", "sink,sqlite",
            "--mode", "throughput,profile", "--count", "60", "--duration", "5",
            "--big-count", "3", "--profile-count", "15", "--concurrency", "5",
            "--workdir", str(tmp_path / "bench"),
        ],
        capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(result.stdout.strip().splitlines()[-1])
    for kind in ("sink", "sqlite"):
        small = data["throughput"][kind]["small"]
        assert small["ok"] == small["attempted"] > 0, small
        assert small["msgs_per_s"] > 0
    assert data["throughput"]["sqlite"]["small"]["replies"] == {
        "250 logged": data["throughput"]["sqlite"]["small"]["ok"]
    }
    assert "sqlite/sink 10kB" in data["ratios"]
    stages = data["profile"]["sqlite/10kB"]["stages"]
    assert "stage parse" in stages
    assert "Store.record" in stages


def test_bench_memory_with_a_signed_message(tmp_path: Path) -> None:
    """The memory mode sends a big message twice, the second DKIM-signed with a key the
    benchmark's DNS stub serves: the daemon verifies it (dkim=pass) on the streaming path."""
    work = tmp_path / "bench"
    result = subprocess.run(
        [
            sys.executable, str(BENCH), "--targets", "sqlite", "--mode", "memory",
            "--memory-size", "2000000", "--leak", "3,6", "--workdir", str(work),
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(result.stdout.strip().splitlines()[-1])
    memory = data["memory"]["sqlite"]
    for label in ("huge", "huge_signed"):
        assert memory[label]["replies"] == {"250 logged": 1}, memory
        assert memory[label]["multiple_of_size"] > 0
    with sqlite3.connect(work / "memory-sqlite" / "capture.db") as db:
        rows = db.execute("SELECT authentication_json FROM capture_event").fetchall()
    dkim = [
        method["result"]
        for (text,) in rows
        for method in json.loads(text)["results"]["methods"]
        if method["method"] == "dkim"
    ]
    assert "pass" in dkim, dkim
