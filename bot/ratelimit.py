"""At most `per_minute` API calls started in any sliding 60-second window.

The dispatcher holds a slot for each job it starts, so it never starts more jobs than the
window can take. The slot counts from the moment the job's API call is sent (`use`); a
job that ends without a call (refused for its allowance, a block, the budget, a bad image)
gives its slot back at once (`release`), so refusals never hold other members back.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable
from dataclasses import dataclass

RATE_WINDOW_S = 60.0


@dataclass(eq=False, slots=True)
class Slot:
    """One job's place in the window: held until its call is sent or it ends."""

    used_at: float | None = None
    released: bool = False


class RateLimiter:
    def __init__(self, per_minute: int, clock: Callable[[], float]) -> None:
        self.limit = per_minute
        self._clock = clock
        self._starts: collections.deque[float] = collections.deque()  # calls sent, oldest first
        self._held: set[Slot] = set()  # jobs started whose call is not sent yet

    def _prune(self, now: float) -> None:
        while self._starts and now - self._starts[0] >= RATE_WINDOW_S:
            self._starts.popleft()

    @property
    def held(self) -> int:
        return len(self._held)

    def delay(self) -> float:
        """Seconds until another job may start (0 = now). `math.inf` when only held slots
        fill the window: the next one is freed by a job ending, not by time."""
        now = self._clock()
        self._prune(now)
        if len(self._starts) + len(self._held) < self.limit:
            return 0.0
        if not self._starts:
            return math.inf
        return max(0.0, self._starts[0] + RATE_WINDOW_S - now)

    def hold(self) -> Slot:
        """A slot for a job about to start; `use` it when the call is sent."""
        slot = Slot()
        self._held.add(slot)
        return slot

    def use(self, slot: Slot) -> None:
        """The job's API call is being sent: its slot counts for the next minute."""
        if slot.used_at is not None or slot.released:
            return
        self._held.discard(slot)
        slot.used_at = self._clock()
        self._starts.append(slot.used_at)

    def release(self, slot: Slot) -> bool:
        """The job ended. True when it never sent a call, so its slot is free again."""
        if slot.used_at is not None or slot.released:
            return False
        slot.released = True
        self._held.discard(slot)
        return True

    def wait_for(self, nth: int) -> float:
        """Seconds until the `nth` start from now (1 = the next) is allowed by the window.
        A held slot is counted as a call sent now: it usually is, a moment later."""
        now = self._clock()
        self._prune(now)
        free_now = max(0, self.limit - len(self._starts) - len(self._held))
        rounds, index = divmod(nth - 1, self.limit)
        # When each of the `limit` places in the window is next free, earliest first: the
        # free ones now, then each call sent a minute after it went (sent in time order, so
        # already sorted), then the held ones a minute from now. Read, not built and sorted:
        # the status loop asks for every waiting job, and the limit may be in the thousands.
        if index < free_now:
            free_at = now
        elif index - free_now < len(self._starts):
            free_at = self._starts[index - free_now] + RATE_WINDOW_S
        else:
            free_at = now + RATE_WINDOW_S
        return max(0.0, free_at + rounds * RATE_WINDOW_S - now)
