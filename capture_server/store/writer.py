"""Group commit: the Store.record calls of concurrent sessions share one transaction.

A durable commit (an fsync on SQLite with synchronous=FULL, a WAL flush on PostgreSQL) is
the dearest part of recording a message, and SQLite takes one writer at a time anyway. One
thread takes every record waiting, runs each in a savepoint of a single transaction and
commits once; each caller gets its result only after that commit, so a 250 still means
the message is stored. A message whose record fails rolls back its savepoint alone and gets
its own exception, as it would have without batching. Anything that breaks the transaction
(a lock time-out, a lost connection, a deadlock with another node) rolls the batch back and
records each message again in its own transaction, so faults still surface per message
(StoreUnavailable → 451).
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlmodel import Session

from capture_server.logging import get_logger
from capture_server.store.repositories import RecordResult, Store, StoreUnavailable

log = get_logger("store")


@dataclass
class _Pending:
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    done: threading.Event = field(default_factory=threading.Event)
    result: RecordResult | None = None
    error: BaseException | None = None


class _BatchBroken(Exception):
    """The shared transaction cannot go on: record the batch one message at a time."""


class GroupWriter:
    """Store.record with the same arguments, batched; call it from worker threads."""

    def __init__(self, store: Store, max_batch: int = 64) -> None:
        self.store = store
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[_Pending] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="group-commit", daemon=True)
        self._thread.start()

    def record(self, *args: Any, **kwargs: Any) -> RecordResult:
        pending = _Pending(args, kwargs)
        self._queue.put(pending)
        pending.done.wait()
        if pending.error is not None:
            raise pending.error
        assert pending.result is not None
        return pending.result

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                if len(batch) == 1:
                    self._alone(batch[0])
                else:
                    self._together(batch)
            finally:
                for pending in batch:
                    pending.done.set()

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
                    for pending in batch:
                        self._in_savepoint(pending)
                finally:
                    self.store._group.session = None
        except Exception as error:
            # Nothing of the batch is stored: each message gets its own transaction instead.
            log.warning("group_commit_retry_singly", size=len(batch), error=type(error).__name__)
            for pending in batch:
                pending.result, pending.error = None, None
                self._alone(pending)
            return
        log.debug("group_commit", size=len(batch))

    def _in_savepoint(self, pending: _Pending) -> None:
        try:
            pending.result = self.store.record(*pending.args, **pending.kwargs)
        except (DBAPIError, StoreUnavailable) as error:
            if _breaks_transaction(error):
                raise _BatchBroken from error
            pending.error = error  # this message's own fault (a constraint): its savepoint
        except Exception as error:
            pending.error = error


def _breaks_transaction(error: BaseException) -> bool:
    """Only a constraint violation is surely this message's alone; anything else: retry singly."""
    return not isinstance(error, IntegrityError)
