"""A clock the test moves: time stands still until `advance`, which wakes due sleepers.

Implements `bot.clock.Clock`. With `auto=True` every sleep moves time on by itself at once,
for code under test that sleeps alone (a client's backoff) and needs nobody to wake it.
`settle` lets woken tasks run without moving time; `until` waits for something the code
does on its own (real I/O), with a real-time limit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

# Enough turns of the event loop for every hop of a wake-up chain (timer -> dispatcher ->
# job task -> runner) to run. Everything under test is plain asyncio with no I/O, so each
# turn runs every step that became ready in the last one.
SETTLE_TURNS = 50


class StoppedClock:
    """A plain `clock() -> now` that stands still until the test moves it (`now`, `advance`)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class ManualClock:
    def __init__(self, start: float = 1000.0, *, auto: bool = False) -> None:
        self._now = start
        self.auto = auto
        self.slept: list[float] = []  # every sleep asked for, in order
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        if self.auto:
            self._now += max(0.0, seconds)
        if seconds <= 0 or self.auto:
            await asyncio.sleep(0)  # a sleep still lets others run, as asyncio.sleep(0) does
            return
        wake = asyncio.get_running_loop().create_future()
        entry = (self._now + seconds, wake)
        self._sleepers.append(entry)
        try:
            await wake
        finally:
            if entry in self._sleepers:  # cancelled before its time
                self._sleepers.remove(entry)

    @property
    def sleeping(self) -> int:
        """How many sleeps are waiting for time to move."""
        return len(self._sleepers)

    def advance(self, seconds: float) -> None:
        """Move time on and wake, earliest first, every sleeper whose time has come."""
        assert seconds >= 0, "a monotonic clock never goes back"
        self._now += seconds
        due = sorted((e for e in self._sleepers if e[0] <= self._now), key=lambda e: e[0])
        for entry in due:
            self._sleepers.remove(entry)
            if not entry[1].done():
                entry[1].set_result(None)


async def settle() -> None:
    """Let everything already woken run to its next wait, without moving any clock."""
    for _ in range(SETTLE_TURNS):
        await asyncio.sleep(0)


async def advance(clock: ManualClock, seconds: float) -> None:
    """Move `clock` on, then let what it woke run."""
    clock.advance(seconds)
    await settle()


async def until(predicate: Callable[[], object], timeout: float = 2.0) -> None:  # noqa: ASYNC109
    """Wait (in real time, polling) for something the code under test does on its own."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.002)
