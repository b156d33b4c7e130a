"""A sliding-window limit on how many edits may start per minute."""

from __future__ import annotations

import collections
from collections.abc import Callable

RATE_WINDOW_S = 60.0


class RateLimiter:
    """At most `per_minute` starts in any sliding 60-second window."""

    def __init__(self, per_minute: int, clock: Callable[[], float]) -> None:
        self._limit = per_minute
        self._clock = clock
        self._starts: collections.deque[float] = collections.deque()

    def delay(self) -> float:
        """Seconds until the next start is allowed (0 = now)."""
        now = self._clock()
        while self._starts and now - self._starts[0] >= RATE_WINDOW_S:
            self._starts.popleft()
        if len(self._starts) >= self._limit:
            return max(0.0, self._starts[0] + RATE_WINDOW_S - now)
        return 0.0

    def record(self) -> None:
        self._starts.append(self._clock())
