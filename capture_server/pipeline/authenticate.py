"""Stage: may the From header be trusted? (Evidence is gathered at the edge, before.)"""

from __future__ import annotations

import dataclasses

from capture_server.authentication import decide
from capture_server.pipeline.message import (
    Action,
    AuthMode,
    AuthReport,
    Decision,
    Mailbox,
    Reason,
    Work,
)

STAGE = "authenticate"


def authenticate_stage(work: Work) -> Work | Decision:
    mode = work.snapshot.rules.auth_mode
    if mode is AuthMode.OFF:
        report = AuthReport(mode, "skipped", "authentication checks are off", None)
        return work.advance(STAGE, "skip", report.detail, auth=report)
    evidence = work.message.auth
    # No evidence at all (not gathered, or no answer in time) is never a pass: decide()
    # makes it a tempfail in enforce and a "would fail" in report.
    results = evidence.results if evidence else None
    structure = evidence.structure if evidence else ()
    verdict = decide(results, structure, mode.value)
    report = AuthReport(mode, verdict.outcome, verdict.detail, evidence)
    auth_from = None
    if results is not None and results.from_address:
        auth_from = Mailbox(results.from_address)
    if verdict.outcome == "tempfail":
        # Not acknowledged: 451 4.4.3, and the sending MTA retries after the DNS recovers.
        deferred = dataclasses.replace(work, auth=report)
        return deferred.decide(STAGE, Action.DEFER, Reason.AUTH_TEMPERROR, verdict.detail)
    if verdict.outcome == "fail":
        failed = dataclasses.replace(work, auth=report)
        return failed.decide(STAGE, Action.REJECT, Reason.AUTH_FAILED, verdict.detail)
    return work.advance(STAGE, verdict.outcome, verdict.detail, auth=report, auth_from=auth_from)
