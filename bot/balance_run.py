"""The balances a run of calls reported, in billing order, and which gaps between them are
one call's cost.

Answers may reach the bot in another order than Segmind billed them (they are read and
checked concurrently), so a drop between two answers in arrival order can hold two calls,
or be a rise. Sorted by value, the readings are in billing order; the gap between two
neighbours is the cost of the lower one's call once no call that could have been billed
between them is still running: every call in flight when the later of the two arrived has
finished. (One that finished with a 200 has its own reading in the run; one that may have
been billed without a reading ends the run.)
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

MAX_READINGS = 64  # the oldest (highest) readings are let go beyond this
TOP_UP_EPSILON = 1e-9


@dataclass
class _Reading:
    value: float
    generation_id: int | None
    waiting: set[int]  # calls in flight when it arrived
    priced: bool = False  # the gap above it was taken as its call's cost


@dataclass(frozen=True)
class Gap:
    """One call's cost: the drop from the reading above its own."""

    amount: float
    generation_id: int | None


@dataclass
class BalanceRun:
    """Readings since the last point where a call may have been billed unseen."""

    _readings: list[_Reading] = field(default_factory=list)  # highest (oldest) first

    def clear(self) -> None:
        """A call may have been billed without a reading: no gap spans that point."""
        self._readings.clear()

    def add(
        self, value: float, generation_id: int | None, in_flight: set[int], *, fresh: bool
    ) -> None:
        """A 200's reading. `fresh`: start the run here (after an admin's key check, whose
        own cost must not be taken for an edit's). A reading above all others is a top-up
        (or a call billed before the run began): the run starts again from it."""
        if fresh or (self._readings and value > self._readings[0].value + TOP_UP_EPSILON):
            self._readings.clear()
        keys = [-r.value for r in self._readings]
        at = bisect.bisect_right(keys, -value)
        self._readings.insert(at, _Reading(value, generation_id, set(in_flight)))
        if len(self._readings) > MAX_READINGS:
            del self._readings[0]

    def finished(self, ticket: int) -> None:
        for reading in self._readings:
            reading.waiting.discard(ticket)

    def closed_gaps(self) -> list[Gap]:
        """Gaps that became final since the last call, each returned once."""
        found = []
        for above, below in zip(self._readings, self._readings[1:], strict=False):
            if below.priced or above.waiting or below.waiting:
                continue
            below.priced = True
            amount = round(above.value - below.value, 6)
            if amount > 0:  # two equal readings: a lagging header, not a free call
                found.append(Gap(amount, below.generation_id))
        return found
