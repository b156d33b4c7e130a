"""Edges where money could go wrong that the other suites do not reach: a billed 200 that
says it cost nothing, and a restart that meets a member's own Deliver press."""

from __future__ import annotations

from bot import db
from bot.credits import Cost, CreditMeter
from bot.db import generations
from tests.helpers import make_new_generation

MODEL = "flux-kontext-dev"
ESTIMATE = 0.04


async def settled_call(
    meter: CreditMeter, conn: db.Database, remaining: float, header_cost: float | None
) -> Cost:
    """One call alone, recorded as the pipeline records it."""
    gen_id = await generations.insert(conn, make_new_generation(model=MODEL))
    cost = await meter.settle(
        meter.start(), generation_id=gen_id, remaining=remaining, header_cost=header_cost
    )
    await generations.mark_succeeded(
        conn, gen_id, api_seed=None, api_time_s=1.0, request_id=None, cost=cost.amount,
        cost_source=cost.source, remaining_credits=remaining, reencoded=False,
        measured_cost=cost.measured,
    )  # fmt: skip
    return cost


async def test_a_zero_x_cost_on_a_billed_200_is_not_a_free_edit(conn: db.Database) -> None:
    meter = CreditMeter(conn, model=MODEL, fallback_estimate=ESTIMATE)
    await settled_call(meter, conn, remaining=100.0, header_cost=None)

    # A 200 is billed: the balance fell 0.04 whatever the undocumented x-cost says.
    cost = await settled_call(meter, conn, remaining=99.96, header_cost=0.0)

    assert cost.amount == ESTIMATE and cost.source == "balance_drop"
    # Nor does a 0 become what every later edit reserves, after a restart either.
    restarted = CreditMeter(conn, model=MODEL, fallback_estimate=ESTIMATE)
    assert await restarted.expected_cost() == ESTIMATE
