"""Operator alerts: once per incident, a cooldown per kind, and the health rules that
raise them (halts, a low balance, a run of failures at the API)."""

from __future__ import annotations

import pytest

from bot import segmind
from bot.adapter.alert_text import alert_text
from bot.alerts import Alerts
from bot.health import Incident, IncidentKind, ServiceHealth
from tests.clock import StoppedClock as Clock


@pytest.fixture
def sent() -> list[Incident]:
    return []


@pytest.fixture
def hub(clock: Clock, sent: list[Incident]) -> Alerts:
    hub = Alerts(cooldown_s=600, clock=clock)

    async def sink(incident: Incident) -> None:
        sent.append(incident)

    hub.sinks.append(sink)
    return hub


def watched(hub: Alerts, clock: Clock, **options: float) -> ServiceHealth:
    """A ServiceHealth whose incidents go to `hub`, as the core wires them."""
    health = ServiceHealth(probe_interval_s=300, clock=clock, **options)  # type: ignore[arg-type]
    health.incident_hooks.append(hub.notify)
    return health


def calls_end(health: ServiceHealth, *outcomes: segmind.SegmindError | None) -> None:
    """Calls end one after another: each with its error, or None for a success."""
    for error in outcomes:
        if error is None:
            health.call_succeeded()
        else:
            health.api_failed(error)


DOWN = segmind.ServerError("the API failed with status 500", status=500)
LOW = IncidentKind.LOW_BALANCE
KEY = IncidentKind.KEY_REJECTED


async def test_an_alert_kind_is_sent_once_per_cooldown(
    hub: Alerts, clock: Clock, sent: list[Incident]
) -> None:
    assert hub.notify(Incident(LOW, "low")) is True
    assert hub.notify(Incident(LOW, "still low")) is False
    assert hub.notify(Incident(KEY, "key")) is True  # another kind is not held back
    clock.now += 599
    assert hub.notify(Incident(LOW, "low again")) is False
    clock.now += 1
    assert hub.notify(Incident(LOW, "low again")) is True
    await hub.drain()
    assert [(a.kind, a.detail) for a in sent] == [
        (LOW, "low"),
        (KEY, "key"),
        (LOW, "low again"),
    ]


async def test_a_failing_sink_never_breaks_the_caller(
    hub: Alerts, sent: list[Incident], caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(incident: Incident) -> None:
        raise RuntimeError("channel gone")

    hub.sinks.insert(0, broken)
    hub.notify(Incident(IncidentKind.OUT_OF_CREDITS, "paused"))
    await hub.drain()
    assert [a.kind for a in sent] == [IncidentKind.OUT_OF_CREDITS]
    assert "Could not deliver alert out_of_credits" in caplog.text


@pytest.mark.parametrize(
    ("cause", "kind", "words"),
    [
        (segmind.AuthError(segmind.KEY_REJECTED, status=401), KEY, "rejected the bot's API key"),
        (
            segmind.InsufficientCredits(segmind.OUT_OF_CREDITS, status=406),
            IncidentKind.OUT_OF_CREDITS,
            "out of credits",
        ),
        (1.5, IncidentKind.ACCOUNT_FLOOR, "account balance 1.50 is under the reserve 2.00"),
    ],
)
async def test_each_halt_names_its_incident(
    hub: Alerts, clock: Clock, sent: list[Incident], cause: object, kind: str, words: str
) -> None:
    health = watched(hub, clock, reserve=2.0)
    if isinstance(cause, segmind.SegmindError):
        health.api_failed(cause)
    else:
        health.check_floor(cause)  # type: ignore[arg-type]
    await hub.drain()
    [incident] = sent
    assert incident.kind == kind and health.halted == incident
    assert words in alert_text(incident)


async def test_low_balance_alerts_once_until_a_top_up(clock: Clock, sent: list[Incident]) -> None:
    hub = Alerts(cooldown_s=0, clock=clock)

    async def sink(incident: Incident) -> None:
        sent.append(incident)

    hub.sinks.append(sink)
    health = watched(hub, clock, low_balance=5.0)
    for balance in (6.0, 4.96, 4.92, 4.88):
        health.balance_seen(balance)
    health.balance_seen(20.0)  # topped up: the incident is over
    health.balance_seen(4.5)  # a new one
    await hub.drain()
    assert [alert_text(a).split(" credits")[0] for a in sent] == [
        "The Segmind balance is down to 4.96",
        "The Segmind balance is down to 4.50",
    ]
    watched(hub, clock, low_balance=0).balance_seen(0.01)  # 0 turns the alert off
    await hub.drain()
    assert len(sent) == 2


async def test_repeated_api_failures_alert_once_per_streak(
    hub: Alerts, clock: Clock, sent: list[Incident]
) -> None:
    health = watched(hub, clock, streak=3)
    calls_end(health, DOWN, DOWN, None, DOWN, DOWN, DOWN, DOWN, DOWN)  # a success resets it
    await hub.drain()
    [alert] = sent
    assert alert.kind == IncidentKind.API_FAILURES
    assert "The last 3 edits failed at Segmind (latest: the API failed with status 500)" in (
        alert_text(alert)
    )
    assert health.halted is None  # an outage is reported, not a halt


async def test_a_refused_request_breaks_the_streak(
    hub: Alerts, clock: Clock, sent: list[Incident]
) -> None:
    health = watched(hub, clock, streak=3)
    refused = segmind.BadRequest("bad prompt", status=422)  # the API itself is up
    calls_end(health, DOWN, DOWN, refused, DOWN)
    await hub.drain()
    assert sent == []


async def test_a_rejected_key_stops_every_call_including_probes_until_an_admin_acts(
    hub: Alerts, clock: Clock
) -> None:
    health = watched(hub, clock)
    health.api_failed(segmind.AuthError(segmind.KEY_REJECTED, status=401))
    clock.now += 3600
    assert health.allow_call() is False  # no probe for a key that will not fix itself
    health.resume()
    assert health.allow_call() is True and health.needs_admin is False


async def test_other_halts_still_probe(hub: Alerts, clock: Clock) -> None:
    health = watched(hub, clock)
    health.api_failed(segmind.InsufficientCredits(segmind.OUT_OF_CREDITS, status=406))
    assert health.allow_call() is False
    clock.now += 300
    assert health.allow_call() is True
