"""Alerts for the people who run the bot: each incident once, and at most once per kind
per cooldown, so a failing API cannot flood anyone. Delivery goes through sinks the
Discord side registers (they also word the alert), so nothing here knows about Discord."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from bot.health import Incident

log = logging.getLogger(__name__)

DEFAULT_COOLDOWN_S = 3600.0
DRAIN_TIMEOUT_S = 5.0

AlertSink = Callable[[Incident], Awaitable[None]]


class Alerts:
    """Sends each incident to every sink, at most once per kind per cooldown."""

    def __init__(
        self,
        *,
        cooldown_s: float = DEFAULT_COOLDOWN_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cooldown = cooldown_s
        self._clock = clock
        self._last_sent: dict[tuple[str, int | None], float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.sinks: list[AlertSink] = []

    def notify(self, incident: Incident) -> bool:
        """Queue an alert; False when the same kind was sent within the cooldown."""
        now = self._clock()
        key = (incident.kind, incident.guild_id)  # one server's alert never mutes another's
        last = self._last_sent.get(key)
        if last is not None and now - last < self._cooldown:
            log.info("Alert %s suppressed (cooldown): %s", incident.kind, incident.detail)
            return False
        self._last_sent[key] = now
        log.warning("Alert %s: %s", incident.kind, incident.detail)
        for sink in self.sinks:
            task = asyncio.get_running_loop().create_task(self._deliver(sink, incident))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return True

    @staticmethod
    async def _deliver(sink: AlertSink, incident: Incident) -> None:
        try:
            await sink(incident)
        except Exception:
            # An alert that cannot be posted must never break an edit; it is logged above.
            log.exception("Could not deliver alert %s", incident.kind)

    async def drain(self, timeout_s: float = DRAIN_TIMEOUT_S) -> None:
        """Wait for alerts still being posted (at shutdown, and in tests)."""
        if self._tasks:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.gather(*self._tasks, return_exceptions=True), timeout_s
                )
