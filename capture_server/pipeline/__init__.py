"""The pipeline: pure stages over one frozen CapturedMessage."""

from __future__ import annotations

from capture_server.pipeline.attribute import attribute_stage
from capture_server.pipeline.authenticate import authenticate_stage
from capture_server.pipeline.base import Stage, run_pipeline
from capture_server.pipeline.enrich import enrich_stage, private_stage
from capture_server.pipeline.filter import filter_stage
from capture_server.pipeline.match import match_stage
from capture_server.pipeline.parse import parse_stage
from capture_server.pipeline.shape import shape_stage
from capture_server.pipeline.signature import signature_stage
from capture_server.pipeline.thread import thread_stage
from capture_server.pipeline.unwrap import unwrap_stage

STAGES: tuple[Stage, ...] = (
    parse_stage,
    authenticate_stage,
    thread_stage,  # before attribute: mail on no logged thread is ignored, never refused
    attribute_stage,
    unwrap_stage,
    private_stage,  # after unwrap: a forward's original subject may carry the tag too
    filter_stage,
    match_stage,
    enrich_stage,
    signature_stage,
    shape_stage,
)

__all__ = ["STAGES", "Stage", "run_pipeline"]
