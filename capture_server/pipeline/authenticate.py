"""Stage: may the From header be trusted? (Evidence is gathered at the edge, before.)"""

from __future__ import annotations

from capture_server.pipeline.message import Decision, Work

STAGE = "authenticate"


def authenticate_stage(work: Work) -> Work | Decision:
    return work.advance(STAGE, "skip", "sender authentication is off for this account")
