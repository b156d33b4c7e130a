"""What each call cost, read from the account balance the API reports.

The documented cost signal is the drop in `x-remaining-credits`, which is only
unambiguous when no other call on the key started or finished meanwhile. The cost of an
edit is learned from those drops (the median of the latest ones: a robust figure); the
configured estimate is only the starting value. An admin's key check never feeds it.
"""

from __future__ import annotations

import collections
import logging
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

from bot.db import credits as readings
from bot.db import generations
from bot.db.connection import Database

log = logging.getLogger(__name__)

LEARN_WINDOW = 20  # the latest measured costs the expected cost is the median of
# Learned costs needed before a drop far above them is doubted (until then the operator's
# estimate may be far off, and a drop of one call alone is the best figure there is).
TRUSTED_AFTER = 3
MAX_DROP_FACTOR = 3.0  # a drop larger than this many learned costs is not one edit
TOP_UP_EPSILON = 1e-9


@dataclass(frozen=True)
class CallTicket:
    """Issued when a call starts; tells at settle time whether anything overlapped it."""

    events_at_start: int
    alone_at_start: bool


@dataclass(frozen=True)
class Cost:
    amount: float  # what the member is charged
    source: str  # 'header' (x-cost), 'balance_drop' or 'estimate' (the learned cost)
    # What the call was measured to cost, when it was (learned from, kept in the database).
    measured: float | None = field(default=None, compare=False)


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
        # The latest measured costs, in memory: asked for on every edit.
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

    async def _learned(self) -> collections.deque[float]:
        if self._observed is None:
            costs = await generations.observed_costs(self._db, self._model, LEARN_WINDOW)
            self._observed = collections.deque(costs, maxlen=LEARN_WINDOW)
        return self._observed

    async def expected_cost(self) -> float:
        """The median of the latest measured costs of the model, or the configured
        estimate until one is measured. Reservations and ambiguous calls use it."""
        learned = await self._learned()
        return statistics.median(learned) if learned else self._fallback

    async def settle(
        self,
        ticket: CallTicket,
        *,
        generation_id: int | None,
        remaining: float | None,
        header_cost: float | None,
        probe: bool = False,
    ) -> Cost:
        """Record the balance a 200 reported and decide what the call cost.

        `probe`: an admin's key check (no generation): its cost is reported but never
        learned, since its tiny image costs far less than an edit.
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
            return await self._measured(Cost(header_cost, "header"), probe=probe)
        if solo and baseline is not None and remaining is not None and remaining <= baseline:
            drop = round(baseline - remaining, 6)
            if drop > 0:
                return await self._measured(Cost(drop, "balance_drop"), probe=probe)
            # The header lags: this call's cost shows in a later reading, so the next drop
            # is not one call's own either.
            self._baseline = None
            log.info("Balance did not move for generation %s: a lagging header", generation_id)
        estimate = await self.expected_cost()
        log.info("Cost of generation %s is ambiguous; using estimate %.4f", generation_id, estimate)
        return Cost(estimate, "estimate")

    async def _measured(self, cost: Cost, *, probe: bool) -> Cost:
        """A call's own cost was measured: learn it (not a probe's), and charge it unless
        it is far above a cost already learned (someone else spent on the key meanwhile)."""
        if probe:
            return cost
        learned = await self._learned()
        trusted = len(learned) >= TRUSTED_AFTER
        reference = statistics.median(learned) if learned else self._fallback
        if cost.amount > 0:
            learned.append(cost.amount)
        measured = cost.amount if cost.amount > 0 else None
        if cost.source == "balance_drop" and trusted and cost.amount > MAX_DROP_FACTOR * reference:
            log.warning(
                "Balance fell %.4f during one call: not all of it was this edit", cost.amount
            )
            return Cost(reference, "estimate", measured)
        return Cost(cost.amount, cost.source, measured)
