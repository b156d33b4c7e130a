"""Time as something a component is given: what it reads, and how it waits.

Whatever waits for time takes a `Clock`, so a test can move time on instead of sleeping
to show that something did (or did not) happen.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol


class Clock(Protocol):
    """A monotonic time source in seconds, and a way to wait on it."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


@dataclass(frozen=True)
class MonotonicClock:
    """The real clock: `time.monotonic` and `asyncio.sleep`."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


REAL_CLOCK = MonotonicClock()


async def wait_at_most(clock: Clock, seconds: float, tasks: Sequence[asyncio.Task[Any]]) -> None:
    """Until every task is done or `seconds` have passed on `clock` (the tasks run on)."""
    all_done = asyncio.ensure_future(asyncio.wait(tasks))
    timer = asyncio.ensure_future(clock.sleep(seconds))
    try:
        await asyncio.wait([all_done, timer], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in (all_done, timer):
            waiter.cancel()
        await asyncio.gather(all_done, timer, return_exceptions=True)
