"""Group commit: the Store.record calls of concurrent sessions share one transaction.

A durable commit (an fsync on SQLite with synchronous=FULL, a WAL flush on PostgreSQL) is
the dearest part of recording a message, and SQLite takes one writer at a time anyway. One
thread takes every record waiting, runs them one after another in a single transaction and
commits once; each caller gets its result only after that commit, so a 250 still means
the message is stored. When any record fails (a constraint, a lock time-out, a lost
connection, a deadlock with another node) the batch is rolled back and each message is
recorded again in its own transaction, so every fault surfaces for its own message alone
(StoreUnavailable → 451, an IntegrityError as without batching) and the others are stored.
No savepoint per message: SAVEPOINT and RELEASE cost ~7 % of the daemon's CPU (issue 10),
paid on every message for a failure that is rare.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session

from capture_server.logging import get_logger
from capture_server.store.repositories import RecordResult, Store, StoreUnavailable, waited_out

log = get_logger("store")


@dataclass
class _Pending:
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    done: Future[RecordResult] = field(default_factory=Future)
    result: RecordResult | None = None
    error: BaseException | None = None

    def hand_out(self) -> None:
        if self.result is not None:
            self.done.set_result(self.result)
        else:  # never neither: the writer thread must outlive any one batch
            self.done.set_exception(self.error or StoreUnavailable("the group commit stopped"))


class GroupWriter:
    """Store.record with the same arguments, batched.

    `submit` returns at once with a future (the daemon awaits it on its event loop, so no
    thread waits out the commit); `record` waits for it, for callers in worker threads.
    """

    def __init__(self, store: Store, max_batch: int = 64) -> None:
        self.store = store
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[_Pending] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="group-commit", daemon=True)
        self._thread.start()

    def submit(self, *args: Any, **kwargs: Any) -> Future[RecordResult]:
        pending = _Pending(args, kwargs)
        self._queue.put(pending)
        return pending.done

    def record(self, *args: Any, **kwargs: Any) -> RecordResult:
        return self.submit(*args, **kwargs).result()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            # A caller gone before its turn (the client hung up: no reply owed) is skipped;
            # once running, its future can no longer be cancelled.
            batch = [p for p in batch if p.done.set_running_or_notify_cancel()]
            if not batch:
                continue
            try:
                if len(batch) == 1:
                    self._alone(batch[0])
                else:
                    self._together(batch)
            finally:
                for pending in batch:
                    pending.hand_out()

    def _alone(self, pending: _Pending) -> None:
        try:
            pending.result = self.store.record(*pending.args, **pending.kwargs)
        except BaseException as error:  # handed to the caller's thread, raised there
            pending.error = error

    def _together(self, batch: list[_Pending]) -> None:
        try:
            with (
                self.store.writer_turn.held(),
                Session(self.store._write_engine, expire_on_commit=False) as session,
                session.begin(),
            ):
                self.store._group.session = session
                try:
                    results = [self.store.record(*p.args, **p.kwargs) for p in batch]
                finally:
                    self.store._group.session = None
            # Handed out only now that the commit is done (a 250 means stored).
            for pending, result in zip(batch, results, strict=True):
                pending.result = result
        except Exception as error:
            if waited_out(error):
                # Each alone would wait as long again, one after another: all answer 451 now.
                log.warning("group_commit_lock_timeout", size=len(batch), error=str(error)[:200])
                for pending in batch:
                    pending.error = StoreUnavailable(f"lock timeout: {error}")
                return
            # Nothing of the batch is stored: each message gets its own transaction instead.
            log.warning("group_commit_retry_singly", size=len(batch), error=type(error).__name__)
            for pending in batch:  # none has a result or an error yet: handed out after commit
                self._alone(pending)
            return
        log.debug("group_commit", size=len(batch))
