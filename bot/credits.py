"""What each call cost, read from the account balance the API reports.

The documented cost signal is the drop in `x-remaining-credits`, which is only
unambiguous when no other call on the key started or finished meanwhile.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable
from dataclasses import dataclass

from bot.db import credits as readings
from bot.db import generations
from bot.db.connection import Database

log = logging.getLogger(__name__)

AVERAGE_WINDOW = 50
MAX_DROP_FACTOR = 3.0  # a drop larger than this many expected costs is not one edit
TOP_UP_EPSILON = 1e-9


@dataclass(frozen=True)
class CallTicket:
    """Issued when a call starts; tells at settle time whether anything overlapped it."""

    events_at_start: int
    alone_at_start: bool


@dataclass(frozen=True)
class Cost:
    amount: float
    source: str  # 'header' (x-cost), 'balance_drop' or 'estimate'


class CreditMeter:
    """Tracks calls in flight and the last balance reading to attribute costs."""

    def __init__(self, database: Database, *, model: str, fallback_estimate: float) -> None:
        self._db = database
        self._model = model
        self._fallback = fallback_estimate
        self._events = 0
        self._in_flight = 0
        self._last: float | None = None  # the balance as last seen, for the account floor
        # The last balance this process saw itself, with nothing possibly billed since:
        # the only reading a drop may be measured from (not one loaded from the database,
        # which may predate spending this process never saw).
        self._baseline: float | None = None
        self._loaded = False
        # The latest unambiguous costs, in memory: asked for on every edit.
        self._observed: collections.deque[float] | None = None
        # Called with every balance the API reports (low-balance alerts listen here).
        self.reading_hooks: list[Callable[[float], object]] = []

    async def _load(self) -> None:
        if not self._loaded:
            self._last = await readings.last_credit_reading(self._db)
            self._loaded = True

    async def load(self) -> None:
        """Read the last recorded balance now, so the account floor holds from start-up."""
        await self._load()

    @property
    def last_balance(self) -> float | None:
        return self._last

    def start(self) -> CallTicket:
        self._events += 1
        self._in_flight += 1
        return CallTicket(self._events, alone_at_start=self._in_flight == 1)

    def finish_failed(self, ticket: CallTicket, *, maybe_billed: bool = False) -> None:
        """A call ended without a usable 200. It still overlapped others; and when it may
        have been billed (a timeout, a broken 200), the next drop is no longer its own."""
        del ticket
        self._events += 1
        self._in_flight -= 1
        if maybe_billed:
            self._baseline = None

    async def expected_cost(self) -> float:
        """The model's observed average cost, or the configured estimate until one is seen."""
        if self._observed is None:
            costs = await generations.observed_costs(self._db, self._model, AVERAGE_WINDOW)
            self._observed = collections.deque(costs, maxlen=AVERAGE_WINDOW)
        if not self._observed:
            return self._fallback
        return sum(self._observed) / len(self._observed)

    async def _observe(self, cost: Cost) -> Cost:
        await self.expected_cost()  # loads the window from the database the first time
        assert self._observed is not None
        self._observed.append(cost.amount)
        return cost

    async def settle(
        self,
        ticket: CallTicket,
        *,
        generation_id: int | None,
        remaining: float | None,
        header_cost: float | None,
    ) -> Cost:
        """Record the balance a 200 reported and decide what the call cost.

        `generation_id` is None for a billed call that is not an edit (an admin's key check).
        """
        solo = ticket.alone_at_start and self._events == ticket.events_at_start
        self._events += 1
        self._in_flight -= 1
        await self._load()
        previous, baseline = self._last, self._baseline
        # Without a reading the next drop would cover this call too: forget the last one.
        self._baseline = remaining
        if remaining is not None:
            self._last = remaining
            await readings.add_credit_reading(self._db, remaining, generation_id)
            if previous is not None and remaining > previous + TOP_UP_EPSILON:
                log.info("Credit balance rose from %.4f to %.4f: a top-up", previous, remaining)
            for hook in self.reading_hooks:
                hook(remaining)
        if header_cost is not None and header_cost >= 0:
            return await self._observe(Cost(header_cost, "header"))
        estimate = await self.expected_cost()
        if solo and baseline is not None and remaining is not None and remaining <= baseline:
            drop = round(baseline - remaining, 6)
            if drop <= MAX_DROP_FACTOR * estimate:
                return await self._observe(Cost(drop, "balance_drop"))
            # Someone else spent on the key meanwhile (another bot, `kontext-bot edit`).
            log.warning("Balance fell %.4f during one call: not all of it was this edit", drop)
        log.info("Cost of generation %s is ambiguous; using estimate %.4f", generation_id, estimate)
        return Cost(estimate, "estimate")
