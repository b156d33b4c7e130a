"""Edges where money could go wrong that the other suites do not reach: a billed 200 that
says it cost nothing, and a restart that meets a member's own Deliver press."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from bot import core as core_module
from bot import db, jobs
from bot.cards import ResultCard
from bot.core import Core
from bot.credits import Cost, CreditMeter
from bot.db import charges, generations
from bot.db import jobs as job_rows
from bot.ports import Posted
from tests.helpers import make_edit_request, make_image, make_new_generation
from tests.world import CHANNEL_ID, GUILD_ID, MEMBER_ID, make_settings

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


# -- a restart meets the member's own Deliver press ------------------------------------------


class SlowChannel:
    """The Discord side as start-up reaches it: every post waits until `opened`."""

    def __init__(self) -> None:
        self.opened = asyncio.Event()
        self.posting = asyncio.Event()
        self.told: list[str] = []
        self.posted: list[int] = []

    def poster(
        self, channel_id: int, guild_id: int | None, *, reply_to_message_id: int | None
    ) -> SlowChannel:
        return self

    async def post(self, card: ResultCard, image: bytes) -> Posted:
        self.posting.set()
        await self.opened.wait()
        self.posted.append(card.generation_id)
        message_id = 9000 + len(self.posted)
        return Posted(CHANNEL_ID, message_id, None, None, f"https://discord/{message_id}")

    async def tell(self, channel_id: int, guild_id: int | None, user_id: int, text: str) -> None:
        self.told.append(text)

    async def dm(self, user_id: int, text: str) -> bool:
        return True


async def crashed_with_a_paid_result(tmp_path: Path, channel: SlowChannel) -> tuple[int, int]:
    """What a crash during the upload leaves: the job running, its result kept, its cost
    held. Returns (job id, generation id)."""
    core = await core_module.build(make_settings(tmp_path), channels=channel)
    try:
        database = core.database
        job_id = await jobs.add(database, make_edit_request(), reply_to_message_id=None)
        await job_rows.mark_running(database, job_id)
        reservation = await core.ledger.reserve(GUILD_ID, MEMBER_ID, (), ESTIMATE)
        gen_id = await generations.insert(database, make_new_generation(job_id=job_id))
        await core.ledger.attach(reservation, gen_id)
        await generations.mark_succeeded(
            database, gen_id, api_seed=1, api_time_s=1.0, request_id=None, cost=ESTIMATE,
            cost_source="balance_drop", remaining_credits=99.96, reencoded=False,
        )  # fmt: skip
        await core.results.save(gen_id, make_image(), "png")
        await core.ledger.hold(reservation, ESTIMATE, "balance_drop")
    finally:
        await core.aclose()
    return job_id, gen_id


@dataclass
class DeliverPressed:
    """A restart after that crash, the member's Deliver press from /history on its way
    (its upload waits for `channel.opened`)."""

    core: Core
    channel: SlowChannel
    job_id: int
    gen_id: int
    pressed: asyncio.Task[Posted | None]


@asynccontextmanager
async def deliver_pressed_after_a_crash(tmp_path: Path) -> AsyncIterator[DeliverPressed]:
    channel = SlowChannel()
    job_id, gen_id = await crashed_with_a_paid_result(tmp_path, channel)
    core = await core_module.build(make_settings(tmp_path), channels=channel)
    try:
        pressed = asyncio.create_task(
            core.delivery.deliver_kept(gen_id, lambda gen: channel, "delivered from /history")
        )
        await asyncio.wait_for(channel.posting.wait(), 5)
        yield DeliverPressed(core, channel, job_id, gen_id, pressed)
    finally:
        await core.aclose()


async def test_a_result_the_member_is_delivering_is_not_refunded_by_start_up(
    tmp_path: Path,
) -> None:
    # Back up, the member presses Deliver in /history before start-up reaches the job.
    async with deliver_pressed_after_a_crash(tmp_path) as press:
        core, channel, gen_id = press.core, press.channel, press.gen_id
        await core.recovery.finish(channel)
        channel.opened.set()
        posted = await asyncio.wait_for(press.pressed, 5)

        assert posted is not None and channel.posted == [gen_id]  # delivered once
        # Discord has it: it is charged, once, and nobody is told it did not finish.
        assert await charges.states_of(core.database, [gen_id]) == {gen_id: "committed"}
        assert (await core.ledger.status(GUILD_ID, MEMBER_ID, ())).used == ESTIMATE
        assert channel.told == []
        assert await job_rows.state_of(core.database, press.job_id) == "done"


async def test_a_result_being_delivered_as_its_kept_copy_expires_is_charged_not_refunded(
    tmp_path: Path,
) -> None:
    async with deliver_pressed_after_a_crash(tmp_path) as press:
        core, gen_id = press.core, press.gen_id
        # The hourly expiry runs while the upload is on its way, just past the retention.
        core.upkeep.clock = lambda: time.time() + core.results.retention_s + 1
        assert await core.upkeep.expire() == []
        press.channel.opened.set()
        assert await asyncio.wait_for(press.pressed, 5) is not None

        assert await charges.states_of(core.database, [gen_id]) == {gen_id: "committed"}
        assert (await core.ledger.status(GUILD_ID, MEMBER_ID, ())).used == ESTIMATE
