"""Where the time goes: each pipeline stage, Store.snapshot and Store.record, timed in-process.

Runs the same stage functions the daemon runs (capture_server.pipeline.STAGES) on Work objects
built from a real Store on a throw-away database, one message at a time (no concurrency, no
SMTP), then the whole CaptureService.capture (with its JSON log line) for comparison.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mailgen import ACCOUNT_DOMAIN, reps


def cli(database_url: str, env: dict[str, str], *args: str) -> str:
    """Run one capture-server CLI command in-process (as tests/conftest.py does)."""
    from typer.testing import CliRunner

    from capture_server.cli import app

    result = CliRunner().invoke(app, ["--database-url", database_url, *args], env=env)
    if result.exit_code != 0:
        raise RuntimeError(f"capture-server {' '.join(args)} failed: {result.output}")
    return result.output


def setup_account(database_url: str, env: dict[str, str]) -> str:
    """Migrate, create the account `bench` with its reps; returns its BCC address."""
    cli(database_url, env, "init")
    created = json.loads(
        cli(
            database_url,
            env,
            "account",
            "add",
            "bench",
            "--name",
            "Bench Corp",
            "--domain",
            ACCOUNT_DOMAIN,
            "--json",
        )
    )
    for rep in reps():
        cli(database_url, env, "user", "add", "bench", rep.address, "--name", rep.name)
    return str(created["bcc_address"])


def profile(
    database_url: str,
    workdir: Path,
    messages: list[tuple[str, bytes]],
    dns: dict[str, Any],
    warmup: int = 10,
) -> tuple[dict[str, list[float]], dict[str, int]]:
    """Seconds per step per message (in path order, then totals), and the reasons decided.

    The real CaptureService.capture runs, with every stage, Store.snapshot and Store.record
    wrapped in a timer; "other" is what capture spends outside them (thread look-up, ids,
    the JSON log line, written to /dev/null here).
    """
    from capture_server.capture import CaptureService
    from capture_server.config import Settings
    from capture_server.logging import configure_logging
    from capture_server.pipeline import STAGES
    from capture_server.pipeline.message import Envelope
    from capture_server.store.db import make_engine
    from capture_server.store.repositories import Store

    env = {"CAPTURE_SERVER_QUARANTINE_DIR": str(workdir / "quarantine")}
    bcc = setup_account(database_url, env)
    known = Settings.model_fields
    extra = {key: value for key, value in dns.items() if key in known}
    settings = Settings(database_url=database_url, quarantine_dir=workdir / "quarantine", **extra)
    engine = make_engine(database_url)
    store = Store(engine)
    times: dict[str, list[float]] = {}

    def timed(name: str, function: Any) -> Any:
        times[name] = []

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                times[name].append(time.perf_counter() - start)

        wrapper.__name__ = getattr(function, "__name__", name)
        return wrapper

    resolve = timed("Store.resolve_capture_address (RCPT)", store.resolve_capture_address)
    service = CaptureService(store, settings)
    evidence_step = getattr(service, "gather_evidence_now", None)  # auth: DNS + account rules
    if evidence_step is not None:
        evidence_step = timed("gather_evidence (SPF/DMARC DNS)", evidence_step)
    store.snapshot = timed("Store.snapshot", store.snapshot)  # type: ignore[method-assign]
    service.stages = tuple(timed(_stage_name(stage), stage) for stage in STAGES)
    store.record = timed("Store.record", store.record)  # type: ignore[method-assign]
    capture = timed("CaptureService.capture", service.capture)
    totals: list[float] = []
    outcomes: dict[str, int] = {}
    try:
        with open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink):
            configure_logging("json", "info")
            for number, (mail_from, raw) in enumerate(messages):
                if number == warmup:
                    for values in times.values():
                        values.clear()
                    totals.clear()
                start = time.perf_counter()
                target = resolve(bcc)
                assert target is not None, "the capture address did not resolve"
                envelope = Envelope(
                    mail_from, bcc, "smtp", datetime.now(UTC), "127.0.0.1", "bench.localhost"
                )
                kwargs = {}
                if evidence_step is not None:
                    kwargs["evidence"] = evidence_step(raw, envelope, target)
                outcome = capture(raw, envelope, target, **kwargs)
                totals.append(time.perf_counter() - start)
                reason = outcome.decision.reason.value if outcome.decision else "quarantined"
                outcomes[reason] = outcomes.get(reason, 0) + 1
    finally:
        engine.dispose()
    inner = [k for k in times if k.startswith(("stage ", "Store.snapshot", "Store.record"))]
    times["other inside capture"] = [
        total - sum(times[k][i] for k in inner if i < len(times[k]))
        for i, total in enumerate(times["CaptureService.capture"])
    ]
    times["per message (RCPT + evidence + capture)"] = totals
    return times, outcomes


def _stage_name(stage: Any) -> str:
    name = getattr(stage, "__name__", repr(stage))
    return "stage " + name.removesuffix("_stage")
