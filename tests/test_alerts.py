"""Admin alerts: once per incident, a cooldown per kind, and the watchers that raise them."""

from __future__ import annotations

import contextlib

import pytest

from bot import alerts, segmind
from bot.alerts import Alert, Alerts, ApiWatch, BalanceWatch, halt_kind
from bot.health import ServiceHealth
from bot.keycheck import floor_reason
from bot.params import build_params


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sent() -> list[Alert]:
    return []


@pytest.fixture
def hub(clock: Clock, sent: list[Alert]) -> Alerts:
    hub = Alerts(cooldown_s=600, clock=clock)

    async def sink(alert: Alert) -> None:
        sent.append(alert)

    hub.sinks.append(sink)
    return hub


async def test_an_alert_kind_is_sent_once_per_cooldown(
    hub: Alerts, clock: Clock, sent: list[Alert]
) -> None:
    assert hub.notify("low_balance", "low") is True
    assert hub.notify("low_balance", "still low") is False
    assert hub.notify("key_rejected", "key") is True  # another kind is not held back
    clock.now += 599
    assert hub.notify("low_balance", "low again") is False
    clock.now += 1
    assert hub.notify("low_balance", "low again") is True
    await hub.drain()
    assert [(a.kind, a.text) for a in sent] == [
        ("low_balance", "low"),
        ("key_rejected", "key"),
        ("low_balance", "low again"),
    ]


async def test_a_failing_sink_never_breaks_the_caller(
    hub: Alerts, sent: list[Alert], caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(alert: Alert) -> None:
        raise RuntimeError("channel gone")

    hub.sinks.insert(0, broken)
    hub.notify("halted", "paused")
    await hub.drain()
    assert [a.kind for a in sent] == ["halted"]
    assert "Could not deliver alert halted" in caplog.text


@pytest.mark.parametrize(
    ("reason", "kind", "words"),
    [
        (segmind.KEY_REJECTED, alerts.KEY_REJECTED, "rejected the bot's API key"),
        (segmind.OUT_OF_CREDITS, alerts.OUT_OF_CREDITS, "out of credits"),
        (floor_reason(1.5, 2.0), alerts.ACCOUNT_FLOOR, "account balance 1.50 is under the"),
        ("something new", alerts.HALTED, "Edits are paused: something new."),
    ],
)
async def test_each_halt_reason_names_its_incident(
    hub: Alerts, sent: list[Alert], reason: str, kind: str, words: str
) -> None:
    assert halt_kind(reason) == kind
    hub.on_halt(reason)
    await hub.drain()
    [alert] = sent
    assert alert.kind == kind
    assert words in alert.text


async def test_low_balance_alerts_once_until_a_top_up(sent: list[Alert]) -> None:
    hub = Alerts(cooldown_s=0)

    async def sink(alert: Alert) -> None:
        sent.append(alert)

    hub.sinks.append(sink)
    watch = BalanceWatch(hub, threshold=5.0)
    for balance in (6.0, 4.96, 4.92, 4.88):
        watch.seen(balance)
    watch.seen(20.0)  # topped up: the incident is over
    watch.seen(4.5)  # a new one
    await hub.drain()
    assert [a.text.split(" credits")[0] for a in sent] == [
        "The Segmind balance is down to 4.96",
        "The Segmind balance is down to 4.50",
    ]
    BalanceWatch(hub, threshold=0).seen(0.01)  # 0 turns the alert off
    await hub.drain()
    assert len(sent) == 2


class ScriptedApi:
    model = "flux-kontext-dev"

    def __init__(self, *outcomes: BaseException | None) -> None:
        self.outcomes = list(outcomes)

    async def edit(self, input_image: str, params: object) -> segmind.EditResult:
        outcome = self.outcomes.pop(0)
        if outcome is not None:
            raise outcome
        return object()  # type: ignore[return-value]


async def run(watch: ApiWatch, times: int) -> None:
    for _ in range(times):
        with contextlib.suppress(segmind.SegmindError):
            await watch.edit("x", build_params("p", seed=1))


async def test_repeated_api_failures_alert_once_per_streak(
    hub: Alerts, clock: Clock, sent: list[Alert]
) -> None:
    down = segmind.ServerError("the API failed with status 500", status=500)
    api = ScriptedApi(down, down, None, down, down, down, down, down)
    watch = ApiWatch(api, hub, ServiceHealth(), streak=3)
    await run(watch, 3)  # two failures, then a success resets the count
    assert watch.failures == 0
    await run(watch, 5)
    await hub.drain()
    [alert] = sent
    assert alert.kind == alerts.API_FAILURES
    assert "The last 3 edits failed at Segmind (latest: the API failed with status 500)" in (
        alert.text
    )
    assert watch.model == "flux-kontext-dev"


async def test_a_rejected_key_stops_every_call_including_probes_until_an_admin_acts(
    hub: Alerts, clock: Clock
) -> None:
    health = ServiceHealth(probe_interval_s=300, clock=clock)
    watch = ApiWatch(ScriptedApi(segmind.AuthError(segmind.KEY_REJECTED, status=401)), hub, health)
    await run(watch, 1)
    health.halt(segmind.KEY_REJECTED)  # what the pipeline does next
    clock.now += 3600
    assert health.allow_call() is False  # no probe for a key that will not fix itself
    health.resume()
    assert health.allow_call() is True and health.needs_admin is False


async def test_other_halts_still_probe(clock: Clock) -> None:
    health = ServiceHealth(probe_interval_s=300, clock=clock)
    health.halt(segmind.OUT_OF_CREDITS)
    clock.now += 300
    assert health.allow_call() is True
