"""Run the stages in order; the first Decision ends the run."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from capture_server.pipeline.message import (
    AccountSnapshot,
    Action,
    CapturedMessage,
    Decision,
    Reason,
    Work,
)

Stage = Callable[[Work], "Work | Decision"]


def run_pipeline(
    message: CapturedMessage,
    snapshot: AccountSnapshot,
    stages: Sequence[Stage],
    observe: Callable[[str, float], None] | None = None,
) -> Decision:
    """`observe(stage, seconds)` is told how long each stage took (metrics); stages stay pure."""
    work = Work(message=message, snapshot=snapshot)
    for stage in stages:
        started = time.perf_counter()
        result = stage(work)
        if observe is not None:
            observe(stage.__name__.removesuffix("_stage"), time.perf_counter() - started)
        if isinstance(result, Decision):
            return result
        work = result
    # The last stage (shape) always decides; reaching here means a stage list without it.
    return work.decide("pipeline", Action.IGNORE, Reason.UNPARSEABLE, "no stage decided")
