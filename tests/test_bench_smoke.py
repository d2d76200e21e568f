"""The benchmark (bench/run.py) in its quickest form: bare sink and SQLite, throughput + profile."""

from __future__ import annotations

import json
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
