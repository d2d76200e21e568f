"""How many big messages a daemon holds in memory at once (issue 10: memory).

A message arrives in a spool file (smtp/data.py): in memory up to SPOOL_IN_MEMORY, on disk
above. Reading it back and running the pipeline costs about its size again (bench/: 1.15x for
a 50 MiB message). Twenty clients sending 50 MiB each at once would need a gigabyte; here a
big message reserves its size from a budget before it is read back, and waits (on disk, its
client waiting for the reply as after any slow DATA) while the budget is spent. Peak memory
is then about the budget times the pipeline's cost per byte, however many arrive together.

Small messages (the spool's in-memory size or less) never wait: they are the steady flow,
and max_connections bounds them. A message bigger than the whole budget runs alone.
Waiters are served first come, first served, so a big message is not overtaken forever by
smaller ones. One event loop per daemon process: no locks (each worker has its own budget).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from capture_server import metrics
from capture_server.logging import get_logger

log = get_logger("smtp")


class MemoryBudget:
    def __init__(self, limit: Callable[[], int], small: int) -> None:
        self._limit = limit  # read live: SIGHUP may change it
        self.small = small
        self.in_use = 0
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()

    @asynccontextmanager
    async def reserve(self, size: int) -> AsyncIterator[None]:
        """Hold `size` bytes of the budget for the body of the `async with`."""
        amount = 0 if size <= self.small else min(size, self._limit())
        if amount:
            await self._take(amount)
        try:
            yield
        finally:
            if amount:
                self._give_back(amount)

    async def _take(self, amount: int) -> None:
        if not self._waiting and self._fits(amount):
            self._hold(amount)
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((amount, granted))
        metrics.MEMORY_BUDGET_WAITS.inc()
        log.info("memory_budget_wait", size=amount, in_use=self.in_use, waiting=len(self._waiting))
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self._give_back(amount)  # granted as the wait was cancelled: pass it on
            else:
                self._waiting = deque(w for w in self._waiting if w[1] is not granted)
                self._grant()  # it may have been the head that held the others back
            raise

    def _fits(self, amount: int) -> bool:
        return self.in_use + amount <= self._limit() or self.in_use == 0

    def _hold(self, amount: int) -> None:
        self.in_use += amount
        metrics.MEMORY_BUDGET_IN_USE.set(self.in_use)

    def _give_back(self, amount: int) -> None:
        self.in_use -= amount
        metrics.MEMORY_BUDGET_IN_USE.set(self.in_use)
        self._grant()

    def _grant(self) -> None:
        while self._waiting and self._fits(self._waiting[0][0]):
            amount, granted = self._waiting.popleft()
            self._hold(amount)
            granted.set_result(None)
