"""Housekeeping while the bot runs: every hour (not only at start-up), kept results past
RESULT_RETENTION_HOURS are removed and what their edits held is refunded: a result that
could never be delivered is never charged."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection

from bot.clock import REAL_CLOCK, Clock
from bot.ledger import Ledger
from bot.results import ResultStore

log = logging.getLogger(__name__)

EXPIRY_INTERVAL_S = 3600.0


class Upkeep:
    """Owned by the core: `start` runs the hourly expiry, `aclose` stops it."""

    def __init__(
        self,
        results: ResultStore,
        ledger: Ledger,
        *,
        interval_s: float = EXPIRY_INTERVAL_S,
        timer: Clock = REAL_CLOCK,
        clock: Callable[[], float] = time.time,
        uploading: Callable[[], Collection[int]] = frozenset,
    ) -> None:
        self._results = results
        self._ledger = ledger
        self.interval_s = interval_s
        self._timer = timer  # what the loop waits on
        self.clock = clock  # wall time, which results' ages are measured in
        self._task: asyncio.Task[None] | None = None
        # The results being posted right now (bot.delivery): never refunded under an upload.
        self._uploading = uploading

    async def at_start_up(self) -> None:
        """Before anything runs: files no result points at (a save cut short by a crash)
        go, then what has expired."""
        await self._results.sweep_orphans()
        await self.expire()

    async def expire(self) -> list[int]:
        """Remove kept results past the retention period and refund every result never
        delivered that finished before it. Returns the generations refunded."""
        cutoff = self.clock() - self._results.retention_s
        await self._results.prune(cutoff)
        # Asked after the prune: an upload that started before it holds its bytes already.
        return await self._ledger.refund_undelivered(cutoff, uploading=self._uploading())

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="upkeep")

    async def _run(self) -> None:
        while True:
            await self._timer.sleep(self.interval_s)
            try:
                await self.expire()
            except Exception:  # the next hour tries again; the bot must not stop for it
                log.exception("Expiring kept results failed")

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
