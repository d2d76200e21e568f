"""Group commit: one transaction for a batch, each message's fault its own."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlmodel import Session

from capture_server.pipeline import STAGES, run_pipeline
from capture_server.pipeline.message import CapturedMessage, Envelope
from capture_server.smtp import replies
from capture_server.store.repositories import RecordResult, Store, StoreUnavailable, new_id
from capture_server.store.writer import GroupWriter, _Pending
from tests.conftest import read_data
from tests.store.test_store import RULES, setup_account


def _args(store: Store, bcc: str, number: int, event_id: str | None = None) -> tuple[object, ...]:
    raw = read_data("bcc_simple.eml").replace(
        b"<proposal-q3-1@mail.acme.test>", f"<group-{number}@acme.test>".encode()
    )
    target = store.resolve_capture_address(bcc)
    assert target is not None
    message = CapturedMessage(
        Envelope("rita@acme.test", bcc, "test", datetime.now(UTC)), target, raw
    )
    decision = run_pipeline(message, store.snapshot(target.account_id, (), RULES), STAGES)
    return (message, decision, event_id or new_id("evt"), replies.for_decision)


def _engagements(store: Store) -> set[str]:
    return {str(e["message_id"]) for e in store.engagements("acme")}


def test_a_failing_message_does_not_fail_its_batch(store: Store) -> None:
    bcc = setup_account(store)
    writer = GroupWriter(store)
    taken = new_id("evt")
    writer.record(*_args(store, bcc, 0, taken))
    batch = [
        _Pending(_args(store, bcc, 1), {}),
        _Pending(_args(store, bcc, 2, taken), {}),  # its event id exists: a constraint fails
        _Pending(_args(store, bcc, 3), {}),
    ]
    writer._together(batch)
    assert isinstance(batch[0].result, RecordResult) and batch[0].error is None
    assert isinstance(batch[1].error, IntegrityError) and batch[1].result is None
    assert isinstance(batch[2].result, RecordResult) and batch[2].error is None
    # The batch was recorded again one by one: the failed message alone is not stored.
    assert _engagements(store) == {f"<group-{n}@acme.test>" for n in (0, 1, 3)}


def test_a_fault_that_breaks_the_transaction_retries_each_alone(store: Store) -> None:
    bcc = setup_account(store)
    writer = GroupWriter(store)

    def broken(session: Session) -> None:
        session.execute(text("SELECT * FROM no_such_table"))  # not a constraint: batch aborts

    batch = [
        _Pending(_args(store, bcc, 1), {}),
        _Pending(_args(store, bcc, 2), {"prepare": broken}),
        _Pending(_args(store, bcc, 3), {}),
    ]
    writer._together(batch)
    assert batch[0].result is not None and batch[2].result is not None
    assert isinstance(batch[1].error, DBAPIError | StoreUnavailable)  # as it would alone
    assert _engagements(store) == {"<group-1@acme.test>", "<group-3@acme.test>"}


def test_concurrent_callers_each_get_their_own_result(store: Store) -> None:
    bcc = setup_account(store)
    writer = GroupWriter(store)
    prepared = [_args(store, bcc, n) for n in range(24)]
    results: dict[int, RecordResult] = {}

    def send(number: int) -> None:
        results[number] = writer.record(*prepared[number])

    threads = [threading.Thread(target=send, args=(n,)) for n in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(results) == list(range(24))
    assert len({r.engagement_id for r in results.values()}) == 24
    assert len(_engagements(store)) == 24
    with pytest.raises(IntegrityError):  # one alone still raises its own error
        writer.record(*_args(store, bcc, 99, results[0].event_id))


def test_a_record_cancelled_before_its_turn_is_skipped(store: Store) -> None:
    """The daemon's caller goes away when its client hangs up before the reply; a record not
    yet begun is then dropped (no 250 was owed), one begun can no longer be cancelled."""
    bcc = setup_account(store)
    writer = GroupWriter(store)
    started, gate = threading.Event(), threading.Event()

    def hold(session: Session) -> None:
        started.set()
        gate.wait(timeout=30)

    first = writer.submit(*_args(store, bcc, 1), prepare=hold)
    assert started.wait(timeout=30)
    second = writer.submit(*_args(store, bcc, 2))
    third = writer.submit(*_args(store, bcc, 3))
    assert second.cancel() and not first.cancel()
    gate.set()
    assert first.result(timeout=30).engagement_id and third.result(timeout=30).engagement_id
    assert second.cancelled()
    assert writer.record(*_args(store, bcc, 4)).engagement_id  # the writer thread lives on
    assert _engagements(store) == {f"<group-{n}@acme.test>" for n in (1, 3, 4)}
