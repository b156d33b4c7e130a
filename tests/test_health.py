"""ServiceHealth: halts doomed calls after an operator problem, probes, and tells admins once."""

from __future__ import annotations

import logging

import pytest

from bot.health import PROBE_INTERVAL_S, Incident, IncidentKind, ServiceHealth
from tests.clock import StoppedClock as Clock

INTERVAL = 300.0
KEY = Incident(IncidentKind.KEY_REJECTED, "the API key was rejected")
CREDITS = Incident(IncidentKind.OUT_OF_CREDITS, "out of credits")


@pytest.fixture
def incidents() -> list[str]:
    return []


@pytest.fixture
def health(clock: Clock, incidents: list[str]) -> ServiceHealth:
    h = ServiceHealth(probe_interval_s=INTERVAL, clock=clock)
    h.incident_hooks.append(lambda incident: incidents.append(incident.detail))
    return h


def test_calls_are_allowed_while_healthy(health: ServiceHealth) -> None:
    assert all(health.allow_call() for _ in range(5))
    assert health.halted_reason is None


def test_default_probe_interval_is_five_minutes() -> None:
    assert PROBE_INTERVAL_S == 300.0


def test_halt_refuses_calls(health: ServiceHealth, clock: Clock) -> None:
    health.halt(KEY)
    assert health.halted_reason == "the API key was rejected"
    assert health.allow_call() is False
    clock.advance(INTERVAL - 0.001)
    assert health.allow_call() is False


def test_after_the_probe_interval_exactly_one_probe_is_allowed(
    health: ServiceHealth, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.health")
    health.halt(CREDITS)
    clock.advance(INTERVAL)
    allowed = [health.allow_call() for _ in range(5)]
    assert allowed == [True, False, False, False, False]
    assert "probe" in caplog.text
    # Still only one while that probe is unanswered, however long it takes.
    clock.advance(INTERVAL * 3)
    assert health.allow_call() is False


def test_probe_success_clears_the_halt(health: ServiceHealth, clock: Clock) -> None:
    health.halt(CREDITS)
    clock.advance(INTERVAL)
    assert health.allow_call() is True
    health.call_succeeded()
    assert health.halted_reason is None
    assert all(health.allow_call() for _ in range(3))


def test_probe_failing_the_same_way_restarts_the_wait(health: ServiceHealth, clock: Clock) -> None:
    health.halt(CREDITS)
    clock.advance(INTERVAL)
    assert health.allow_call() is True
    health.halt(CREDITS)  # the probe got 406 again
    assert health.allow_call() is False
    clock.advance(INTERVAL - 1)
    assert health.allow_call() is False
    clock.advance(1)
    assert health.allow_call() is True


def test_probe_failing_for_another_reason_frees_the_probe_slot(
    health: ServiceHealth, clock: Clock
) -> None:
    health.halt(KEY)
    clock.advance(INTERVAL)
    assert health.allow_call() is True
    health.call_failed_otherwise()  # e.g. a 500: says nothing about the key
    assert health.halted_reason == "the API key was rejected"
    assert health.allow_call() is True
    assert health.allow_call() is False


def test_admin_resume_clears_the_halt_at_once(health: ServiceHealth) -> None:
    health.halt(CREDITS)
    health.resume()
    assert health.halted_reason is None
    assert health.allow_call() is True


def test_incident_hook_runs_once_per_incident_not_per_failure(
    health: ServiceHealth, clock: Clock, incidents: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="bot.health")
    for _ in range(5):
        health.halt(KEY)
    clock.advance(INTERVAL)
    health.allow_call()
    health.halt(KEY)  # the probe failed too: same incident
    assert incidents == ["the API key was rejected"]
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1

    health.call_succeeded()
    health.halt(CREDITS)  # a new incident after recovery
    assert incidents == ["the API key was rejected", "out of credits"]


def test_every_incident_hook_is_called(clock: Clock) -> None:
    health = ServiceHealth(probe_interval_s=INTERVAL, clock=clock)
    first: list[Incident] = []
    second: list[Incident] = []
    health.incident_hooks.extend([first.append, second.append])
    health.halt(CREDITS)
    assert first == second == [CREDITS]


def test_a_new_reason_during_a_halt_is_recorded_without_a_new_incident(
    health: ServiceHealth, incidents: list[str]
) -> None:
    health.halt(KEY)
    health.halt(CREDITS)
    assert health.halted_reason == "out of credits"
    assert incidents == ["the API key was rejected"]
