"""CreditMeter: what each call cost, from the balance the API reports, on a real database."""

from __future__ import annotations

import base64
import logging

import pytest

from bot import db
from bot.credits import Cost, CreditMeter
from bot.db import credits as credit_readings
from bot.db import generations
from bot.params import build_params
from bot.segmind import InvalidResponse, SegmindClient
from tests.fake_segmind import FakeSegmind
from tests.helpers import make_image, make_new_generation, record_success
from tests.world import API_KEY

MODEL = "flux-kontext-dev"
FALLBACK = 0.05


def meter_for(conn: db.Database, fallback: float = FALLBACK) -> CreditMeter:
    return CreditMeter(conn, model=MODEL, fallback_estimate=fallback)


async def new_generation(conn: db.Database, model: str = MODEL) -> int:
    return await generations.insert(conn, make_new_generation(model=model))


async def succeeded(conn: db.Database, cost: float, source: str, model: str = MODEL) -> int:
    gen_id = await new_generation(conn, model)
    await record_success(
        conn,
        gen_id,
        cost=cost,
        cost_source=source,
        measured_cost=cost if source in ("header", "balance_drop") else None,
    )
    return gen_id


async def readings(conn: db.Database) -> list[tuple[float, int | None]]:
    return [(r.remaining, r.generation_id) for r in await credit_readings.credit_readings(conn)]


async def solo_call(
    meter: CreditMeter,
    conn: db.Database,
    remaining: float | None,
    header_cost: float | None = None,
) -> Cost:
    ticket = meter.start()
    return await meter.settle(
        ticket,
        generation_id=await new_generation(conn),
        remaining=remaining,
        header_cost=header_cost,
    )


# ---------------------------------------------------------------------- attribution


async def test_a_stored_reading_is_the_known_balance_but_not_a_baseline_for_costs(
    conn: db.Database,
) -> None:
    # Left by an earlier run: calls that run stopped may have been billed since.
    await credit_readings.add_credit_reading(conn, 100.0, None)
    meter = meter_for(conn)
    await meter.load()
    assert meter.last_balance == 100.0  # the account floor holds from start-up
    assert await solo_call(meter, conn, remaining=99.90) == Cost(FALLBACK, "estimate")
    assert meter.last_balance == 99.90
    assert await solo_call(meter, conn, remaining=99.86) == Cost(0.04, "balance_drop")


async def test_consecutive_solo_calls_each_cost_their_own_drop(conn: db.Database) -> None:
    meter = meter_for(conn)
    await solo_call(meter, conn, remaining=10.0)
    assert await solo_call(meter, conn, remaining=9.96) == Cost(0.04, "balance_drop")
    assert await solo_call(meter, conn, remaining=9.86) == Cost(0.1, "balance_drop")


async def test_first_call_ever_uses_the_configured_estimate(
    conn: db.Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.credits")
    meter = meter_for(conn)
    assert meter.last_balance is None
    assert await solo_call(meter, conn, remaining=99.96) == Cost(FALLBACK, "estimate")
    assert "ambiguous" in caplog.text
    # The reading is kept, so the next call can be measured.
    assert meter.last_balance == 99.96


async def test_overlapping_calls_are_charged_the_learned_cost_never_their_drop(
    conn: db.Database,
) -> None:
    meter = meter_for(conn)
    await solo_call(meter, conn, remaining=100.0)
    first, second = meter.start(), meter.start()
    g1, g2 = await new_generation(conn), await new_generation(conn)
    c1 = await meter.settle(first, generation_id=g1, remaining=99.96, header_cost=None)
    c2 = await meter.settle(second, generation_id=g2, remaining=99.92, header_cost=None)
    assert c1 == Cost(FALLBACK, "estimate")
    assert c2 == Cost(FALLBACK, "estimate")
    # Both answers are in and nothing else ran: each gap is one call's cost, learned.
    assert await meter.expected_cost() == pytest.approx(0.04)
    # Once nothing overlaps any more, drops are exact again.
    assert await solo_call(meter, conn, remaining=99.88) == Cost(0.04, "balance_drop")


async def test_a_call_that_ended_during_another_makes_it_ambiguous(conn: db.Database) -> None:
    meter = meter_for(conn)
    await solo_call(meter, conn, remaining=100.0)
    long_call = meter.start()
    short_call = meter.start()
    meter.finish_failed(short_call)  # a 500 while the first call ran
    cost = await meter.settle(
        long_call, generation_id=await new_generation(conn), remaining=99.96, header_cost=None
    )
    assert cost.source == "estimate"


async def test_a_call_started_after_a_failed_one_finished_is_solo(conn: db.Database) -> None:
    meter = meter_for(conn)
    await solo_call(meter, conn, remaining=100.0)
    meter.finish_failed(meter.start())
    assert await solo_call(meter, conn, remaining=99.96) == Cost(0.04, "balance_drop")


async def test_x_cost_header_wins_over_the_balance_drop(conn: db.Database) -> None:
    meter = meter_for(conn)
    await solo_call(meter, conn, remaining=100.0)
    assert await solo_call(meter, conn, remaining=99.5, header_cost=0.04) == Cost(0.04, "header")


async def test_x_cost_header_wins_even_when_calls_overlap(conn: db.Database) -> None:
    meter = meter_for(conn)
    first, second = meter.start(), meter.start()
    cost = await meter.settle(
        first, generation_id=await new_generation(conn), remaining=99.96, header_cost=0.045
    )
    assert cost == Cost(0.045, "header")
    meter.finish_failed(second)


async def test_negative_x_cost_header_is_ignored(conn: db.Database) -> None:
    meter = meter_for(conn)
    await solo_call(meter, conn, remaining=100.0)
    assert await solo_call(meter, conn, remaining=99.96, header_cost=-1.0) == Cost(
        0.04, "balance_drop"
    )


async def test_top_up_is_logged_and_never_charged_as_negative(
    conn: db.Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.credits")
    meter = meter_for(conn)
    await solo_call(meter, conn, remaining=1.0)
    cost = await solo_call(meter, conn, remaining=50.96)  # +50 top-up during a 0.04 call
    assert cost == Cost(FALLBACK, "estimate")
    assert cost.amount >= 0
    assert "top-up" in caplog.text
    assert "1.0000 to 50.9600" in caplog.text
    # The new balance is the baseline for the next call.
    assert await solo_call(meter, conn, remaining=50.92) == Cost(0.04, "balance_drop")


async def test_call_without_a_balance_header_uses_the_estimate(conn: db.Database) -> None:
    meter = meter_for(conn)
    await solo_call(meter, conn, remaining=100.0)
    assert await solo_call(meter, conn, remaining=None) == Cost(FALLBACK, "estimate")


async def test_call_after_one_without_a_balance_header_is_not_charged_for_both(
    conn: db.Database,
) -> None:
    meter = meter_for(conn)
    await solo_call(meter, conn, remaining=100.0)
    await solo_call(meter, conn, remaining=None)  # really billed 0.04: balance now 99.96
    cost = await solo_call(meter, conn, remaining=99.92)
    assert cost != Cost(0.08, "balance_drop")


async def test_cost_after_a_billed_broken_response_is_not_double_counted(
    conn: db.Database, segmind: FakeSegmind
) -> None:
    # The real client and the fake's real billing, driven the way EditPipeline._call does.
    meter = meter_for(conn)
    client = SegmindClient(
        api_key=API_KEY, base_url=segmind.base_url, model=MODEL, timeout_s=10, max_retries=0
    )
    image = base64.b64encode(make_image(128, 128)).decode()
    params = build_params("x", seed=1)
    try:
        first = meter.start()
        result = await client.edit(image, params)
        await meter.settle(
            first,
            generation_id=await new_generation(conn),
            remaining=result.remaining_credits,
            header_cost=result.cost,
        )

        segmind.not_image_next()  # a 200 with garbage: billed, but unusable
        broken = meter.start()
        with pytest.raises(InvalidResponse):
            await client.edit(image, params)
        meter.finish_failed(broken, maybe_billed=True)  # as EditPipeline._call reports it

        third = meter.start()
        result = await client.edit(image, params)
        cost = await meter.settle(
            third,
            generation_id=await new_generation(conn),
            remaining=result.remaining_credits,
            header_cost=result.cost,
        )
    finally:
        await client.aclose()
    assert segmind.calls_billed == 3
    assert cost.amount == pytest.approx(0.04) or cost.source == "estimate"


# ---------------------------------------------------------------------- expected cost


async def test_expected_cost_is_the_fallback_until_a_cost_is_observed(conn: db.Database) -> None:
    meter = meter_for(conn, fallback=0.07)
    assert await meter.expected_cost() == 0.07
    await succeeded(conn, 0.5, "estimate")  # estimates are not observations
    assert await meter.expected_cost() == 0.07


async def test_expected_cost_is_the_median_of_observed_costs_of_this_model_only(
    conn: db.Database,
) -> None:
    await succeeded(conn, 0.03, "balance_drop")
    await succeeded(conn, 0.05, "header")
    await succeeded(conn, 0.9, "estimate")
    await succeeded(conn, 1.0, "header", model="flux-kontext-max")
    assert await meter_for(conn).expected_cost() == pytest.approx(0.04)


async def test_expected_cost_uses_only_the_latest_twenty_observations(conn: db.Database) -> None:
    for _ in range(15):
        await succeeded(conn, 10.0, "header")
    for _ in range(20):
        await succeeded(conn, 0.02, "balance_drop")
    assert await meter_for(conn).expected_cost() == pytest.approx(0.02)


async def test_ambiguous_call_is_charged_the_learned_cost(conn: db.Database) -> None:
    await succeeded(conn, 0.03, "balance_drop")
    await succeeded(conn, 0.05, "header")
    meter = meter_for(conn)
    cost = await solo_call(meter, conn, remaining=99.0)  # first reading: ambiguous
    assert cost.source == "estimate"
    assert cost.amount == pytest.approx(0.04)


# ---------------------------------------------------------------------- stored readings


async def test_readings_are_stored_with_their_generation_ids(conn: db.Database) -> None:
    meter = meter_for(conn)
    g1 = await new_generation(conn)
    g2 = await new_generation(conn)
    g3 = await new_generation(conn)
    for gen_id, remaining in ((g1, 100.0), (g2, None), (g3, 99.92)):
        await meter.settle(
            meter.start(), generation_id=gen_id, remaining=remaining, header_cost=None
        )
    assert await readings(conn) == [(100.0, g1), (99.92, g3)]
    assert await credit_readings.last_credit_reading(conn) == 99.92


async def test_a_new_meter_measures_drops_from_its_own_first_reading(conn: db.Database) -> None:
    await solo_call(meter_for(conn), conn, remaining=42.0)
    restarted = meter_for(conn)  # as after a bot restart
    assert await solo_call(restarted, conn, remaining=41.95) == Cost(FALLBACK, "estimate")
    assert await solo_call(restarted, conn, remaining=41.90) == Cost(0.05, "balance_drop")
