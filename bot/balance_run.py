"""The balances a run of calls reported, in billing order, and which gaps between them are
one call's cost.

Answers may reach the bot in another order than Segmind billed them (they are read and
checked concurrently), so a drop between two answers in arrival order can hold two calls,
or be a rise. Sorted by value, the readings are in billing order; the gap between two
neighbours is the cost of the lower one's call once no call that could have been billed
between them is still running: every call in flight when the later of the two arrived has
finished (one that finished with a 200 has its own reading in the run).

A call that may have been billed without a reading (a timeout, a 5xx, a broken 200, a 200
without the header, a header that lagged) leaves a barrier: its bill lies below every
reading that arrived before it started, and above every reading of a call that started
after it ended. A gap that may hold it is not `clean`: never charged to a member as one
call's cost. It is still learned: only one gap holds that bill, and the median of many
gaps is not moved by it (while such a call runs, every gap may hold it).
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
    ticket: int  # its call's number (calls are numbered as they start)
    arrived: int  # the meter's event count when it arrived
    waiting: set[int]  # calls in flight when it arrived
    probe: bool  # an admin's key check: its cost is not an edit's
    priced: bool = False  # the gap above it was looked at


@dataclass(frozen=True)
class _Barrier:
    started: int  # the event count when the unseen call started
    last_ticket: int  # the highest call number when it ended


@dataclass(frozen=True)
class Gap:
    """One call's cost: the drop from the reading above its own. Not `clean`: it may also
    hold the bill of a call that left no reading."""

    amount: float
    generation_id: int | None
    clean: bool


@dataclass
class BalanceRun:
    _readings: list[_Reading] = field(default_factory=list)  # highest (oldest) first
    _barriers: list[_Barrier] = field(default_factory=list)

    def add(
        self,
        value: float,
        *,
        generation_id: int | None,
        ticket: int,
        arrived: int,
        in_flight: set[int],
        probe: bool = False,
    ) -> None:
        """A 200's reading. One above all others is a top-up (the balance rose): gaps
        across it would be negative, so the run starts again from it."""
        if self._readings and value > self._readings[0].value + TOP_UP_EPSILON:
            self._readings.clear()
        keys = [-r.value for r in self._readings]
        reading = _Reading(value, generation_id, ticket, arrived, set(in_flight), probe)
        self._readings.insert(bisect.bisect_right(keys, -value), reading)
        if len(self._readings) > MAX_READINGS:
            del self._readings[0]

    def billed_unseen(self, *, started: int, last_ticket: int) -> None:
        """A call that may have been billed ended without a reading of its own."""
        self._barriers.append(_Barrier(started, last_ticket))

    def finished(self, ticket: int, running: set[int]) -> None:
        """A call ended; `running` is what is still in flight."""
        for reading in self._readings:
            reading.waiting.discard(ticket)
        # A barrier matters while a reading, or a call still running, started before its
        # call ended (every later call is billed after it).
        oldest = min([r.ticket for r in self._readings] + list(running), default=None)
        self._barriers = [
            b for b in self._barriers if oldest is not None and oldest <= b.last_ticket
        ]

    def closed_gaps(self) -> list[Gap]:
        """Gaps that became final since the last call, each returned once (not the cost
        of a key check, nor the 0 of a lagging header)."""
        found = []
        for above, below in zip(self._readings, self._readings[1:], strict=False):
            if below.priced or above.waiting or below.waiting:
                continue
            below.priced = True
            amount = round(above.value - below.value, 6)
            if amount > 0 and not below.probe:
                clean = not self._may_hold_unseen(above, below)
                found.append(Gap(amount, below.generation_id, clean))
        return found

    def _may_hold_unseen(self, above: _Reading, below: _Reading) -> bool:
        return any(
            below.arrived > b.started and above.ticket <= b.last_ticket for b in self._barriers
        )
