"""The operator's key check: one real, minimal request that proves the key works and,
when it does, lifts the halt on edits (unless the balance is still under the reserve)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from bot import segmind
from bot.credits import Cost, CreditMeter
from bot.health import ServiceHealth

log = logging.getLogger(__name__)


class KeyChecker(Protocol):
    async def check_key(self) -> segmind.KeyCheck: ...


@dataclass(frozen=True)
class KeyCheckResult:
    authenticated: bool  # the API accepted the key (a 200 or a 422)
    status: int | None  # the API's answer, when there was one
    cost: Cost | None  # what the check cost; None when nothing was billed
    balance: float | None  # the latest balance known after the check
    error: str | None  # why the check failed, safe to show
    halted_reason: str | None  # the halt still in force afterwards, if any


async def run_key_check(
    api: KeyChecker, meter: CreditMeter, health: ServiceHealth
) -> KeyCheckResult:
    """Send the check; a success clears the halt, a 401 or 406 keeps (or starts) it."""
    ticket = meter.start()
    try:
        answer = await api.check_key()
    except segmind.SegmindError as exc:
        meter.finish_failed(ticket, maybe_billed=exc.maybe_billed)
        health.api_failed(exc, balance=meter.last_balance, edit_cost=await meter.expected_cost())
        log.warning("Key check failed: %s", exc.message)
        return KeyCheckResult(
            False, exc.status, None, meter.last_balance, exc.message, health.halted_reason
        )
    except BaseException:
        meter.finish_failed(ticket)
        raise
    cost = None
    if answer.billed:
        cost = await meter.settle(
            ticket,
            generation_id=None,
            remaining=answer.remaining_credits,
            header_cost=answer.cost,
            probe=True,  # its tiny image says nothing about what an edit costs
        )
    else:
        meter.finish_failed(ticket)
    health.check_passed(meter.last_balance)
    log.info("Key check passed (HTTP %d)", answer.status)
    return KeyCheckResult(True, answer.status, cost, meter.last_balance, None, health.halted_reason)
