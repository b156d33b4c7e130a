"""How often the bot answers a member in public when it refuses them.

A member whose mentions or replies keep being refused (out of allowance, blocked, no image
...) gets at most one public answer per `PUBLIC_ANSWER_INTERVAL_S`; the Discord side marks
the rest with a reaction only, so nobody can make the bot flood a channel.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable

PUBLIC_ANSWER_INTERVAL_S = 30.0
REMEMBERED_MEMBERS = 10_000  # beyond this, members whose interval has passed are forgotten


class AnswerThrottle:
    def __init__(
        self,
        *,
        interval_s: float = PUBLIC_ANSWER_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        remember: int = REMEMBERED_MEMBERS,
    ) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._remember = remember
        self._last: dict[Hashable, float] = {}  # member -> when they were last answered

    @property
    def remembered(self) -> int:
        return len(self._last)

    def may_answer(self, member: Hashable) -> bool:
        """True (and the member's interval starts now) when they may be answered in public;
        False within the interval of their last public answer."""
        now = self._clock()
        last = self._last.get(member)
        if last is not None and now - last < self.interval_s:
            return False
        if len(self._last) >= self._remember:
            self._last = {m: t for m, t in self._last.items() if now - t < self.interval_s}
        self._last[member] = now
        return True
