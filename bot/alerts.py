"""Alerts for the server admins: once per incident, with a per-kind cooldown so a failing
API cannot flood the alerts channel. Delivery goes through sinks the Discord client
registers, so nothing here knows about Discord."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot import segmind
from bot.health import ServiceHealth
from bot.params import EditParams

log = logging.getLogger(__name__)

DEFAULT_COOLDOWN_S = 3600.0
# Consecutive failed edits (after the client's own retries) that count as an outage.
FAILURE_STREAK = 3
DRAIN_TIMEOUT_S = 5.0

KEY_REJECTED = "key_rejected"
OUT_OF_CREDITS = "out_of_credits"
ACCOUNT_FLOOR = "account_floor"
LOW_BALANCE = "low_balance"
API_FAILURES = "api_failures"
HALTED = "halted"

# The pipeline names a floor halt "account balance X is under the reserve Y".
_FLOOR_PREFIX = "account balance"
_OUTAGES = (
    segmind.ServerError,
    segmind.RateLimited,
    segmind.ConnectFailed,
    segmind.SegmindTimeout,
    segmind.InvalidResponse,
)


@dataclass(frozen=True)
class Alert:
    kind: str
    text: str


AlertSink = Callable[[Alert], Awaitable[None]]


def halt_kind(reason: str) -> str:
    """Which incident a ServiceHealth halt reason stands for."""
    if reason == segmind.KEY_REJECTED:
        return KEY_REJECTED
    if reason == segmind.OUT_OF_CREDITS:
        return OUT_OF_CREDITS
    if reason.startswith(_FLOOR_PREFIX):
        return ACCOUNT_FLOOR
    return HALTED


def halt_text(reason: str) -> str:
    """What the admins are told when edits stop."""
    kind = halt_kind(reason)
    if kind == KEY_REJECTED:
        return (
            "Segmind rejected the bot's API key, so no edits are being sent. Fix the key "
            "(SEGMIND_API_KEY, then restart), or run `/admin check` once it works again."
        )
    if kind == OUT_OF_CREDITS:
        return (
            "The Segmind account is out of credits, so edits are paused. Top up at "
            "segmind.com, then run `/admin check` (the bot also retries one edit every 5 minutes)."
        )
    if kind == ACCOUNT_FLOOR:
        return (
            f"New edits are paused: the {reason} set by ACCOUNT_RESERVE_CREDITS. "
            "Top up at segmind.com, then run `/admin check`."
        )
    return f"Edits are paused: {reason}."


class Alerts:
    """Sends each alert to every sink, at most once per kind per cooldown."""

    def __init__(
        self,
        *,
        cooldown_s: float = DEFAULT_COOLDOWN_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cooldown = cooldown_s
        self._clock = clock
        self._last_sent: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.sinks: list[AlertSink] = []

    def notify(self, kind: str, text: str) -> bool:
        """Queue an alert; False when the same kind was sent within the cooldown."""
        now = self._clock()
        last = self._last_sent.get(kind)
        if last is not None and now - last < self._cooldown:
            log.info("Alert %s suppressed (cooldown): %s", kind, text)
            return False
        self._last_sent[kind] = now
        log.warning("Alert %s: %s", kind, text)
        alert = Alert(kind, text)
        for sink in self.sinks:
            task = asyncio.get_running_loop().create_task(self._deliver(sink, alert))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return True

    def on_halt(self, reason: str) -> None:
        """A ServiceHealth incident hook."""
        self.notify(halt_kind(reason), halt_text(reason))

    @staticmethod
    async def _deliver(sink: AlertSink, alert: Alert) -> None:
        try:
            await sink(alert)
        except Exception:
            # An alert that cannot be posted must never break an edit; it is logged above.
            log.exception("Could not deliver alert %s", alert.kind)

    async def drain(self, timeout_s: float = DRAIN_TIMEOUT_S) -> None:
        """Wait for alerts still being posted (at shutdown, and in tests)."""
        if self._tasks:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.gather(*self._tasks, return_exceptions=True), timeout_s
                )


class BalanceWatch:
    """Alerts once when the balance falls under the threshold, again only after it has
    been back above it (a top-up) and fallen again."""

    def __init__(self, alerts: Alerts, threshold: float) -> None:
        self._alerts = alerts
        self._threshold = threshold
        self._low = False

    def seen(self, remaining: float) -> None:
        if self._threshold <= 0:
            return
        if remaining >= self._threshold:
            self._low = False
            return
        if not self._low:
            self._low = True
            self._alerts.notify(
                LOW_BALANCE,
                f"The Segmind balance is down to {remaining:.2f} credits "
                f"(alert level {self._threshold:.2f}). Top up at segmind.com before it runs out.",
            )


class ApiWatch:
    """Wraps the API transport to notice outages (several failed edits in a row) and
    a rejected key (which must stop every call, probes included, until an admin acts)."""

    def __init__(
        self,
        inner: segmind.EditTransport,
        alerts: Alerts,
        health: ServiceHealth,
        *,
        streak: int = FAILURE_STREAK,
    ) -> None:
        self._inner = inner
        self._alerts = alerts
        self._health = health
        self._streak = streak
        self.failures = 0

    @property
    def model(self) -> str:
        return self._inner.model

    async def edit(self, input_image: str, params: EditParams) -> segmind.EditResult:
        try:
            result = await self._inner.edit(input_image, params)
        except segmind.AuthError:
            self._health.hold_for_admin()
            raise
        except _OUTAGES as exc:
            self.failures += 1
            if self.failures == self._streak:
                self._alerts.notify(
                    API_FAILURES,
                    f"The last {self.failures} edits failed at Segmind (latest: {exc.message}). "
                    "Members are told to try again later; nothing was charged to them.",
                )
            raise
        except segmind.SegmindError:
            self.failures = 0  # a refused request or no credits: the API itself is up
            raise
        self.failures = 0
        return result
