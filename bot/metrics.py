"""Prometheus metrics: defined here, fed through the core's hooks (wired once, in
`bot.core.build`), served by the Discord side's ops endpoint (`bot.adapter.ops_http`).

Each Core has its own registry, never the process-wide default, so several bots in one
process (the tests) keep separate counts.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, Metric

# Servers shown by name in the spend metric; the rest add up under OTHER, so a bot in
# thousands of servers cannot flood Prometheus with series.
SPEND_TOP = 20
OTHER = "other"
API_BUCKETS = (0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 12.0, 20.0, 30.0, 60.0, 120.0)
WAIT_BUCKETS = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)


def api_error_kind(status: int | None) -> str | None:
    """How a failed API attempt is counted; None for a 2xx."""
    if status is None:
        return "no_answer"  # timeout, connection refused or lost
    if status == 429:
        return "429"
    if status >= 500:
        return "5xx"
    if status >= 400:
        return "4xx"
    return None


class _SpendCollector:
    """Credits charged since start, per server: the top SPEND_TOP, then OTHER."""

    NAME = "kontext_spend_credits"
    HELP = f"Credits charged to members since start, by server (top {SPEND_TOP}, then 'other')"

    def __init__(self, spend: dict[int, float]) -> None:
        self._spend = spend

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self.NAME, self.HELP, labels=["guild_id"])

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.NAME, self.HELP, labels=["guild_id"])
        ranked = sorted(self._spend.items(), key=lambda item: item[1], reverse=True)
        for guild_id, amount in ranked[:SPEND_TOP]:
            family.add_metric([str(guild_id)], amount)
        if len(ranked) > SPEND_TOP:
            family.add_metric([OTHER], sum(amount for _, amount in ranked[SPEND_TOP:]))
        yield family


class Metrics:
    """Every metric the bot exports, and one method per thing the core reports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # Every metric is registered here, never in the process-wide default registry.
        counter = functools.partial(Counter, registry=self.registry)
        gauge = functools.partial(Gauge, registry=self.registry)
        histogram = functools.partial(Histogram, registry=self.registry)
        self.edits = counter(
            "kontext_edits",
            "Edits by outcome (succeeded, failed, refused, interrupted) and source",
            ["outcome", "source"],
        )
        self.api_latency = histogram(
            "kontext_api_latency_seconds",
            "Time the image API took to answer, per attempt",
            buckets=API_BUCKETS,
        )
        self.api_errors = counter(
            "kontext_api_errors",
            "Failed API attempts by kind (429, 5xx, 4xx, no_answer), retries included",
            ["kind"],
        )
        self.queue_waiting = gauge("kontext_queue_waiting", "Edits waiting for their turn")
        self.queue_running = gauge("kontext_queue_running", "Edits in flight")
        self.queue_wait = histogram(
            "kontext_queue_wait_seconds",
            "Time from joining the queue to starting",
            buckets=WAIT_BUCKETS,
        )
        self.balance = gauge("kontext_credits_balance", "The Segmind balance as last reported")
        self.balance.set(math.nan)  # unknown until the API reports it
        self.refunds = counter(
            "kontext_refunds",
            "Charged edits refunded because their result was lost before delivery",
        )
        self.halted = gauge("kontext_halted", "1 while edits are halted (key, credits, reserve)")
        self.gateway_connected = gauge(
            "kontext_gateway_connected", "1 while the Discord gateway is connected"
        )
        self.gateway_latency = gauge(
            "kontext_gateway_latency_seconds",
            "Discord gateway heartbeat latency (NaN when unknown)",
        )
        self.gateway_latency.set(math.nan)
        self._spend: dict[int, float] = {}
        self.registry.register(_SpendCollector(self._spend))

    # -- what the core reports (hooks) --------------------------------------------------

    def edit_finished(self, outcome: str, source: str) -> None:
        self.edits.labels(outcome=outcome, source=source).inc()

    def api_answered(self, status: int | None, elapsed_s: float) -> None:
        """One attempt at the API: `status` None when no answer came."""
        if status is not None:
            self.api_latency.observe(elapsed_s)
        kind = api_error_kind(status)
        if kind is not None:
            self.api_errors.labels(kind=kind).inc()

    def job_started(self, wait_s: float) -> None:
        self.queue_wait.observe(max(0.0, wait_s))

    def balance_seen(self, balance: float) -> None:
        self.balance.set(balance)

    def charged(self, guild_id: int, amount: float) -> None:
        self._spend[guild_id] = self._spend.get(guild_id, 0.0) + max(0.0, amount)

    def refunded(self) -> None:
        self.refunds.inc()

    # -- values read when scraped -------------------------------------------------------

    def watch_queue(self, waiting: Callable[[], float], running: Callable[[], float]) -> None:
        self.queue_waiting.set_function(waiting)
        self.queue_running.set_function(running)

    def watch_halt(self, halted: Callable[[], bool]) -> None:
        self.halted.set_function(lambda: float(halted()))

    def watch_gateway(self, connected: Callable[[], bool], latency: Callable[[], float]) -> None:
        """The Discord side tells how to read the gateway's state."""
        self.gateway_connected.set_function(lambda: float(connected()))
        self.gateway_latency.set_function(latency)

    def exposition(self) -> tuple[bytes, str]:
        """The Prometheus text format, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
