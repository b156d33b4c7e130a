"""What each call cost, read from the account balance the API reports.

The documented cost signal is the drop in `x-remaining-credits`. A call is charged its own
drop only when no other call on the key started or finished meanwhile (it ran alone);
otherwise it is charged the learned cost: the median of the latest measured costs (a
robust figure). Costs are measured from the readings sorted in billing order (see
`bot.balance_run`), so they are learned under steady load too, where no call runs alone.
The configured estimate is only the starting value. An admin's key check never feeds it.
"""

from __future__ import annotations

import collections
import logging
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

from bot.balance_run import BalanceRun
from bot.db import credits as readings
from bot.db import generations
from bot.db.connection import Database

log = logging.getLogger(__name__)

LEARN_WINDOW = 20  # the latest measured costs the expected cost is the median of
# Learned costs needed before a drop far above them is doubted (until then the operator's
# estimate may be far off, and a drop of one call alone is the best figure there is).
TRUSTED_AFTER = 3
# Once costs are learned, a call alone whose drop is this much above the learned cost is
# charged the learned cost: its drop holds another bill (a timed-out call Segmind billed
# after the bot gave up, someone else using the key). Per-generation pricing barely moves;
# a real price change is learned by the median within a few calls.
MAX_DROP_FACTOR = 1.5
TOP_UP_EPSILON = 1e-9
LAGGING_EPSILON = 1e-9


@dataclass(frozen=True)
class CallTicket:
    """Issued when a call starts; tells at settle time whether anything overlapped it."""

    events_at_start: int
    alone_at_start: bool
    number: int = 0


@dataclass(frozen=True)
class Cost:
    amount: float  # what the member is charged
    source: str  # 'header' (x-cost), 'balance_drop' or 'estimate' (the learned cost)
    # What the call was measured to cost, when it was (learned from, kept in the database).
    measured: float | None = field(default=None, compare=False)


class CreditMeter:
    """Tracks calls in flight and the balance readings to attribute costs."""

    def __init__(self, database: Database, *, model: str, fallback_estimate: float) -> None:
        self._db = database
        self._model = model
        self._fallback = fallback_estimate
        self._events = 0
        self._tickets = 0
        self._running: set[int] = set()
        self._last: float | None = None  # the balance as last seen, for the account floor
        # The last balance this process saw itself, with nothing possibly billed since
        # (not one loaded from the database, which may predate spending this process
        # never saw): what a key check's own drop is measured from.
        self._baseline: float | None = None
        self._run = BalanceRun()
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
        self._tickets += 1
        self._running.add(self._tickets)
        return CallTicket(self._events, len(self._running) == 1, self._tickets)

    def _finished(self, ticket: CallTicket) -> bool:
        """Whether the call ran alone; it is no longer in flight."""
        solo = ticket.alone_at_start and self._events == ticket.events_at_start
        self._events += 1
        self._running.discard(ticket.number)
        self._run.finished(ticket.number, self._running)
        return solo

    def _billed_unseen(self, ticket: CallTicket) -> None:
        self._run.billed_unseen(started=ticket.events_at_start, last_ticket=self._tickets)

    def finish_failed(self, ticket: CallTicket, *, maybe_billed: bool = False) -> None:
        """A call ended without a usable 200. It still overlapped others; and when it may
        have been billed (a timeout, a 5xx, a broken 200), no drop that may hold its bill
        is one call's own."""
        self._finished(ticket)
        if maybe_billed:
            self._baseline = None
            self._billed_unseen(ticket)

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
        solo = self._finished(ticket)
        await self._load()
        learned = await self._learned()
        trusted = len(learned) >= TRUSTED_AFTER
        reference = await self.expected_cost()  # what earlier calls taught, not this one
        previous, baseline = self._last, self._baseline
        self._baseline = remaining
        if remaining is None:
            self._billed_unseen(ticket)  # a later drop holds this call's cost too
        else:
            self._last = remaining
            await readings.add_credit_reading(self._db, remaining, generation_id)
            if previous is not None and remaining > previous + TOP_UP_EPSILON:
                log.info("Credit balance rose from %.4f to %.4f: a top-up", previous, remaining)
            for hook in self.reading_hooks:
                hook(remaining)
            self._run.add(
                remaining,
                generation_id=generation_id,
                ticket=ticket.number,
                arrived=self._events,
                in_flight=self._running,
                probe=probe,
            )
        own = await self._learn_closed_gaps(generation_id)
        # A 200 is billed: an x-cost of 0 says nothing (as a drop of 0 does), and trusting
        # it would make the edit free and teach every later reservation to be 0.
        if header_cost is not None and header_cost > 0:
            if not probe:
                learned.append(header_cost)
            return Cost(header_cost, "header", None if probe else header_cost)
        if probe:
            drop = None
            if solo and baseline is not None and remaining is not None and remaining <= baseline:
                drop = round(baseline - remaining, 6)
            return Cost(drop, "balance_drop") if drop else Cost(reference, "estimate")
        if solo and own is not None:
            if trusted and own > MAX_DROP_FACTOR * reference:
                log.warning("Balance fell %.4f during one call: not all of it was this edit", own)
                return Cost(reference, "estimate", own)
            return Cost(own, "balance_drop", own)
        if solo and _unmoved(remaining, baseline):
            # The header lags: this call's cost shows in a later reading, so the next drop
            # is not one call's own either.
            self._billed_unseen(ticket)
            log.info("Balance did not move for generation %s: a lagging header", generation_id)
        log.info(
            "Cost of generation %s is ambiguous; using estimate %.4f", generation_id, reference
        )
        return Cost(reference, "estimate", own)

    async def _learn_closed_gaps(self, generation_id: int | None) -> float | None:
        """Learn every gap that just became one call's cost; returns this call's own, when
        no unseen bill may be in it."""
        own = None
        learned = await self._learned()
        for gap in self._run.closed_gaps():
            learned.append(gap.amount)
            if gap.generation_id is not None:
                await generations.set_measured_cost(self._db, gap.generation_id, gap.amount)
            if generation_id is not None and gap.generation_id == generation_id and gap.clean:
                own = gap.amount
        return own


def _unmoved(remaining: float | None, baseline: float | None) -> bool:
    if remaining is None or baseline is None:
        return False
    return abs(remaining - baseline) <= LAGGING_EPSILON
