"""What an edit costs is learned from the balance Segmind reports: from drops that are one
call's own, robustly, never from an admin's key check (issue 12, items 2 and 3)."""

from __future__ import annotations

import random
import struct
import zlib

import pytest

from bot import db
from bot.credits import Cost, CreditMeter
from bot.db import generations
from tests.fake_segmind import format_amount
from tests.harness import Harness
from tests.helpers import make_new_generation, record_success
from tests.world import GUILD_ID, MEMBER_ID, OPERATOR_ID

MODEL = "flux-kontext-dev"
ESTIMATE = 0.05


def meter_for(conn: db.Database, estimate: float = ESTIMATE) -> CreditMeter:
    return CreditMeter(conn, model=MODEL, fallback_estimate=estimate)


async def solo(meter: CreditMeter, conn: db.Database, remaining: float | None) -> Cost:
    """One call alone, recorded as the pipeline records it."""
    gen_id = await generations.insert(conn, make_new_generation(model=MODEL))
    cost = await meter.settle(
        meter.start(), generation_id=gen_id, remaining=remaining, header_cost=None
    )
    await record_success(
        conn,
        gen_id,
        cost=cost.amount,
        cost_source=cost.source,
        remaining_credits=remaining,
        measured_cost=cost.measured,
    )
    return cost


async def probe(meter: CreditMeter, remaining: float) -> Cost:
    """An admin's key check as bot.keycheck settles it."""
    return await meter.settle(
        meter.start(), generation_id=None, remaining=remaining, header_cost=None, probe=True
    )


# -- item 3: the real cost is learned ------------------------------------------------------


async def test_a_call_alone_is_charged_its_drop_even_at_five_times_the_estimate(
    conn: db.Database,
) -> None:
    meter = meter_for(conn, estimate=1.0)
    await solo(meter, conn, remaining=1000.0)  # no earlier reading: the estimate
    assert await solo(meter, conn, remaining=995.0) == Cost(5.0, "balance_drop")
    assert await meter.expected_cost() == 5.0  # reservations use what was learned


async def test_the_expected_cost_is_the_median_of_the_last_twenty_drops(
    conn: db.Database,
) -> None:
    meter = meter_for(conn)
    balance = 1000.0
    await solo(meter, conn, remaining=balance)
    for drop in [2.0] * 10 + [0.04] * 15 + [3.0] * 5:
        balance = round(balance - drop, 6)
        await solo(meter, conn, remaining=balance)
    # The last 20 are fifteen at 0.04 and five at 3: their mean would be 0.78.
    assert await meter.expected_cost() == pytest.approx(0.04)
    # The same figure after a restart: it is read back from the database.
    assert await meter_for(conn).expected_cost() == pytest.approx(0.04)


async def test_a_drop_of_zero_is_a_lagging_header_not_a_free_edit(conn: db.Database) -> None:
    meter = meter_for(conn)
    await solo(meter, conn, remaining=100.0)
    assert await solo(meter, conn, remaining=99.96) == Cost(0.04, "balance_drop")

    lagging = await solo(meter, conn, remaining=99.96)  # the header did not move yet

    assert lagging == Cost(0.04, "estimate")
    # The next drop holds the lagging call's cost too: it is not one call's own.
    assert await solo(meter, conn, remaining=99.88) == Cost(0.04, "estimate")
    assert await solo(meter, conn, remaining=99.84) == Cost(0.04, "balance_drop")


async def test_once_learned_a_drop_far_above_it_is_not_charged_whole(conn: db.Database) -> None:
    meter = meter_for(conn)
    balance = 100.0
    await solo(meter, conn, remaining=balance)
    for _ in range(5):
        balance = round(balance - 0.04, 6)
        await solo(meter, conn, remaining=balance)
    # Someone else spent 5 credits on the key during this one call.
    assert await solo(meter, conn, remaining=round(balance - 5.04, 6)) == Cost(0.04, "estimate")


async def overlapping(meter: CreditMeter, conn: db.Database, readings: list[float]) -> None:
    """Calls that all overlap, answering with these balances in turn."""
    tickets = [meter.start() for _ in readings]
    for ticket, remaining in zip(tickets, readings, strict=True):
        gen_id = await generations.insert(conn, make_new_generation(model=MODEL))
        await meter.settle(ticket, generation_id=gen_id, remaining=remaining, header_cost=None)


async def test_the_cost_is_learned_under_steady_load_where_no_call_runs_alone(
    conn: db.Database,
) -> None:
    meter = meter_for(conn, estimate=1.0)
    await overlapping(meter, conn, [995.0, 990.0, 985.0, 975.0, 975.0, 970.0])
    # Drops of 5, 5, 10 (two calls billed before one answered) and 0 (then none): the
    # median is the real cost.
    assert await meter.expected_cost() == 5.0


async def test_the_cost_is_learned_while_a_call_that_will_time_out_is_running(
    conn: db.Database,
) -> None:
    meter = meter_for(conn, estimate=1.0)
    slow = meter.start()  # runs all along, and times out in the end
    await overlapping(meter, conn, [995.0, 990.0, 985.0, 980.0, 975.0])
    meter.finish_failed(slow, maybe_billed=True)
    await overlapping(meter, conn, [970.0])  # the next answer finds the gaps final
    assert await meter.expected_cost() == 5.0


async def test_answers_out_of_billing_order_teach_the_exact_cost(conn: db.Database) -> None:
    # Answers are read and checked concurrently: they reach the meter out of the order
    # Segmind billed them in. Drops in arrival order would be 0.08, a rise, 0.08...
    meter = meter_for(conn)
    await solo(meter, conn, remaining=100.0)
    await overlapping(meter, conn, [99.92, 99.96, 99.84, 99.88])
    assert await meter.expected_cost() == pytest.approx(0.04)
    # A call alone after them is measured from the lowest balance, not the last answer's.
    assert await solo(meter, conn, remaining=99.80) == Cost(0.04, "balance_drop")


async def test_a_drop_that_may_hold_an_unseen_bill_is_never_charged_as_one_calls(
    conn: db.Database,
) -> None:
    meter = meter_for(conn)
    for remaining in (100.0, 99.96, 99.92):
        await solo(meter, conn, remaining=remaining)
    timed_out = meter.start()
    meter.finish_failed(timed_out, maybe_billed=True)  # it ran: 0.04 billed, never seen

    after = await solo(meter, conn, remaining=99.84)

    assert after == Cost(0.04, "estimate")  # not 0.08: half of it was the timed-out call
    # Learned all the same: one gap holds that bill, and the median is not moved by it.
    assert await meter.expected_cost() == pytest.approx(0.04)


async def test_a_timed_out_call_billed_after_the_bot_gave_up_is_not_charged_to_the_next(
    conn: db.Database,
) -> None:
    meter = meter_for(conn)
    for remaining in (100.0, 99.96, 99.92, 99.88):
        await solo(meter, conn, remaining=remaining)
    timed_out = meter.start()
    meter.finish_failed(timed_out, maybe_billed=True)  # Segmind is still working on it
    assert await solo(meter, conn, remaining=99.84) == Cost(0.04, "estimate")

    # Segmind finishes (and bills) the timed-out call while the next one runs alone.
    late = await solo(meter, conn, remaining=99.76)

    assert late == Cost(0.04, "estimate")


@pytest.mark.settings(segmind_cost_estimate=1.0, quota_default_credits=10.5)
async def test_a_member_cannot_get_six_edits_out_of_ten_credits_at_five_a_call(
    harness: Harness,
) -> None:
    h = harness
    h.segmind.cost, h.segmind.credits = 5.0, 1000.0
    results = [await h.answer(await h.edit(f"edit {n}")) for n in range(4)]

    delivered = [r for r in results if r.get("attachments")]
    assert len(delivered) == 2
    assert "out of edits" in results[2]["content"]
    charged = [(c.amount, c.cost_source) for c in await h.charges() if c.state == "committed"]
    # The first call had no earlier balance to measure from; the second ran alone.
    assert charged == [(1.0, "estimate"), (5.0, "balance_drop")]
    assert await h.bot.core.meter.expected_cost() == 5.0
    assert h.segmind.calls_billed == 2


# -- item 2: a key check never feeds what members are charged ------------------------------


async def test_a_key_check_is_never_learned_as_the_cost_of_an_edit(conn: db.Database) -> None:
    meter = meter_for(conn)
    await solo(meter, conn, remaining=100.0)
    await solo(meter, conn, remaining=99.96)
    balance = 99.96
    for _ in range(20):
        balance = round(balance - 0.004, 6)
        assert await probe(meter, balance) == Cost(0.004, "balance_drop")
    assert await meter.expected_cost() == pytest.approx(0.04)


async def test_twenty_key_checks_leave_the_cost_of_an_edit_alone(harness: Harness) -> None:
    h = harness
    for n in range(3):
        assert (await h.answer(await h.edit(f"edit {n}")))["attachments"]
    h.segmind.cost = 0.004  # the check's tiny image costs a tenth of an edit
    for _ in range(20):
        assert (await h.bot.core.operator.check_key(OPERATOR_ID)).authenticated
    h.segmind.cost = 0.04

    assert await h.bot.core.meter.expected_cost() == pytest.approx(0.04)
    view = await h.bot.core.quota_view(GUILD_ID, MEMBER_ID, ())
    assert view.cost == pytest.approx(0.04)


def png_that_will_not_decode(width: int, height: int, data_bytes: int) -> bytes:
    """A PNG whose header and chunk checksums are right (sniffing and verify() pass) but
    whose picture data is not zlib: only a full decode finds out."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    garbage = b"\x00\xff" + random.Random(3).randbytes(data_bytes)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", garbage)
        + chunk(b"IEND", b"")
    )


async def test_a_paid_result_that_cannot_be_made_to_fit_does_not_stop_costs_being_measured(
    harness: Harness,
) -> None:
    """A 200 whose image is over the upload limit and breaks when re-encoded fails that edit
    alone: the call still ends for the meter, so the next call alone is charged its own
    drop (a call left 'in flight' for ever would make every later cost an estimate)."""
    h = harness
    h.discord.guild_upload_limits[GUILD_ID] = 40 * 1024
    fake = h.segmind
    after = round(fake.credits - fake.cost, 6)
    fake.fail_next(
        200,
        body=png_that_will_not_decode(400, 400, 60 * 1024),
        headers={"x-remaining-credits": format_amount(after), "Content-Type": "image/jpeg"},
        billed=True,
    )
    await h.answer(await h.edit("broken"))
    [broken] = await h.edits()
    assert broken.status == "failed"

    await h.answer(await h.edit("fine"))
    newest = max(await h.edits(), key=lambda g: g.id)
    assert newest.status == "succeeded"
    assert (newest.cost_source, newest.cost) == ("balance_drop", pytest.approx(fake.cost))
