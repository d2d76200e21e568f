"""A message that crashes the pipeline is held whole, answered 250, and replayed after a fix."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from capture_server.capture import CaptureService
from capture_server.config import load_settings
from capture_server.pipeline import STAGES
from capture_server.pipeline.message import Decision, Envelope, Work
from capture_server.store.db import make_engine
from capture_server.store.repositories import Store
from tests.conftest import Cli, make_account, read_data


def crashing_stage(work: Work) -> Work | Decision:
    raise ZeroDivisionError("a bug in a rule")


def test_crash_is_quarantined_then_replayed(cli: Cli, database_url: str, tmp_path: Path) -> None:
    account = make_account(cli)
    settings = load_settings(database_url=database_url, quarantine_dir=tmp_path / "quarantine")
    store = Store(make_engine(database_url))
    broken = CaptureService(store, settings, stages=(*STAGES[:3], crashing_stage, *STAGES[3:]))
    target = store.resolve_capture_address(account.bcc)
    assert target is not None
    raw = read_data("bcc_simple.eml")
    envelope = Envelope("rita@acme.test", account.bcc, "smtp", datetime.now(UTC), "127.0.0.1")
    outcome = broken.capture(raw, envelope, target)
    assert outcome.reply.startswith("250 2.0.0 Accepted and held for review as q_")
    quarantine_id = outcome.reply.rsplit(" ", 1)[1]
    held = broken.quarantine.get(quarantine_id)
    assert held.raw == raw and "ZeroDivisionError" in held.error
    assert held.envelope["rcpt"] == account.bcc
    listed = [json.loads(line) for line in cli("quarantine", "list", "--json").splitlines()]
    assert [row["id"] for row in listed] == [quarantine_id]
    assert cli("engagements", "list", account.slug, "--json") == ""
    # After the fix (the normal stages), replay logs it and empties the quarantine.
    output = cli("replay")
    assert f"{quarantine_id}: 250 2.0.0 queued as eng_" in output
    assert cli("quarantine", "list", "--json") == ""
    [engagement] = cli("engagements", "list", account.slug, "--json").splitlines()
    assert json.loads(engagement)["subject"] == "Proposal for the Q3 rollout"
    assert "no quarantined message" in cli("quarantine", "drop", "q_missing", expect=1)
    store.engine.dispose()
