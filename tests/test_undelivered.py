"""A paid result is charged only once Discord has it: until then its cost is held (it counts
as used); a result that can never be delivered is refunded when its kept copy expires, and
its member hears of it by DM when the channel refuses it (issue 12, items 1 and 13)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from bot import db
from bot.db import charges, generations, messages
from bot.ledger import Ledger
from bot.results import ResultStore
from bot.upkeep import Upkeep
from tests.clock import ManualClock, advance, until
from tests.harness import Harness, deliver_buttons
from tests.helpers import forge_crash_during_upload, make_new_generation, record_success
from tests.test_queue_flow import result_of
from tests.world import CHANNEL_ID, GUILD_ID, MEMBER_ID

MISSING_PERMISSIONS = {"message": "Missing Permissions", "code": 50013}
UNKNOWN_CHANNEL = {"message": "Unknown Channel", "code": 10003}
RETENTION_S = 72 * 3600
HOUR_S = 3600.0


@pytest.fixture
def h(harness: Harness) -> Harness:
    harness.bot.core.delivery.backoff_s = 0.01
    return harness


async def money(h: Harness) -> list[tuple[str, float | None]]:
    """The member's charges as (state, amount), oldest first."""
    return [(c.state, c.amount) for c in await h.charges()]


async def used(h: Harness) -> float:
    return (await h.bot.core.ledger.status(GUILD_ID, MEMBER_ID, ())).used


def dms(h: Harness, user_id: int = MEMBER_ID) -> list[dict[str, Any]]:
    """Messages the bot sent to a member's DM channel."""
    dm_channels = {
        cid
        for cid, c in h.discord.channels.items()
        if c["type"] == 1 and c["recipients"][0]["id"] == str(user_id)
    }
    return [m for m in h.discord.messages.values() if int(m["channel_id"]) in dm_channels]


async def refused_edit(h: Harness, status: int = 403, body: dict | None = None) -> dict:
    """An /edit whose channel refuses the result (and every other post there); the token
    has run out, so the interaction's webhook cannot carry it either."""
    h.bot.clock = lambda: time.time() + 16 * 60
    h.refuse_uploads(status, body=body or MISSING_PERMISSIONS, times=10)
    await h.edit("make it night")
    [dm] = await h.discord.wait_for(lambda: dms(h), message="a DM")  # type: ignore[misc]
    [gen] = await generations.history(h.bot.core.database, GUILD_ID, MEMBER_ID, limit=1)
    await h.wait_job_ended("failed")
    return {"gen": gen, "dm": dm}


# -- held until delivered ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body"), [(403, MISSING_PERMISSIONS), (404, UNKNOWN_CHANNEL)], ids=["403", "gone"]
)
async def test_a_result_the_channel_refuses_is_held_not_charged_and_the_member_gets_a_dm(
    h: Harness, status: int, body: dict
) -> None:
    refused = await refused_edit(h, status, body)

    dm, gen = refused["dm"], refused["gen"]
    assert "/history" in dm["content"] and "not charged" in dm["content"]
    assert f"<#{CHANNEL_ID}>" in dm["content"] and "72 hours" in dm["content"]
    assert gen.status == "succeeded" and gen.result_message_id is None
    assert gen.result_path and await asyncio.to_thread(Path(gen.result_path).is_file)  # kept
    assert await money(h) == [("held", 0.04)]
    assert await used(h) == pytest.approx(0.04)  # held money cannot be spent twice
    history = (await h.open_history())["embeds"][0]["description"]
    assert "not delivered" in history and "held, charged only once delivered" in history


async def test_a_refused_dm_is_fine(h: Harness) -> None:
    h.discord.fail_next("POST", r"^/users/@me/channels$", 403, body={"code": 50007})
    h.bot.clock = lambda: time.time() + 16 * 60
    h.refuse_uploads(403, body=MISSING_PERMISSIONS, times=10)
    await h.edit("make it night")
    await h.wait_job_ended("failed")
    assert dms(h) == []
    assert await money(h) == [("held", 0.04)]


async def test_a_result_delivered_from_history_is_charged_then(h: Harness) -> None:
    h.refuse_uploads()
    await h.answer(await h.edit("make it night"))
    assert await money(h) == [("held", 0.04)]
    history = await h.open_history()
    [button] = deliver_buttons(history)

    await h.wait_followup(await h.press(button["custom_id"], history, user_id=MEMBER_ID), "Deliv")

    await h.discord.wait_for(lambda: _committed(h), message="the charge")
    assert await used(h) == pytest.approx(0.04)


async def _committed(h: Harness) -> bool:
    return await money(h) == [("committed", 0.04)]


async def test_a_delivered_result_is_charged(h: Harness) -> None:
    await result_of(h, await h.edit("make it night"))
    await h.discord.wait_for(lambda: _committed(h), message="the charge")


async def test_a_result_the_disk_cannot_keep_is_still_delivered_and_charged_once(
    h: Harness,
) -> None:
    results = h.settings.results_dir
    results.mkdir(parents=True, exist_ok=True)
    results.rmdir()
    results.write_text("a file where the folder should be")  # every save fails
    assert (await result_of(h, await h.edit("make it night")))["attachments"]
    await h.discord.wait_for(lambda: _committed(h), message="the charge")
    assert results.read_text() == "a file where the folder should be"
    [gen] = await generations.of_server(h.bot.core.database, GUILD_ID)
    assert gen.status == "succeeded" and gen.result_path is None


# -- refunded when the kept copy expires ---------------------------------------------------


async def test_a_result_never_delivered_is_refunded_when_its_kept_copy_expires(
    h: Harness,
) -> None:
    gen = (await refused_edit(h))["gen"]
    upkeep = h.bot.core.upkeep

    upkeep.clock = lambda: time.time() + RETENTION_S - HOUR_S
    assert await upkeep.expire() == []  # not yet
    upkeep.clock = lambda: time.time() + RETENTION_S + 1
    assert await upkeep.expire() == [gen.id]

    assert await money(h) == [("released", 0)]
    assert await used(h) == 0
    assert gen.result_path and not await asyncio.to_thread(Path(gen.result_path).exists)
    history = await h.open_history()
    assert "not delivered · not charged" in history["embeds"][0]["description"]
    assert deliver_buttons(history) == []


async def test_credits_report_what_is_held_and_what_no_one_was_charged_for(h: Harness) -> None:
    await result_of(h, await h.edit("one"))  # 99.96, charged the estimate (first reading)
    await result_of(h, await h.edit("two"))  # 99.92, charged its drop
    await refused_edit(h)  # 99.88, held

    shown = _fields(await h.operator("credits"))
    assert shown["This month"] == "0.12"
    assert shown["This month, by who paid"].startswith(
        "charged to members: 0.08 (this server: 0.08)\n"
        "held for results not delivered yet: 0.04 (charged when delivered, refunded if they"
    )
    assert "not charged to anyone: 0.00" in shown["This month, by who paid"]

    h.bot.core.upkeep.clock = lambda: time.time() + RETENTION_S + 1
    await h.bot.core.upkeep.expire()
    shown = _fields(await h.operator("credits"))
    assert shown["This month, by who paid"].startswith(
        "charged to members: 0.08 (this server: 0.08)\nnot charged to anyone: 0.04"
    )


def _fields(message: dict[str, Any]) -> dict[str, str]:
    [embed] = message["embeds"]
    return {f["name"]: f["value"] for f in embed["fields"]}


# -- after a crash -------------------------------------------------------------------------


async def test_a_paid_result_a_crash_left_is_held_until_the_channel_takes_it(
    h: Harness,
) -> None:
    h.refuse_uploads()
    await h.answer(await h.edit("crash before posting"))
    # As if the process had died during the upload: the job still 'running', the charge
    # as the API's answer left it.
    await forge_crash_during_upload(h.bot.core.database, charges_too=True)
    h.refuse_uploads(403, body=MISSING_PERMISSIONS, times=10)

    await h.restart()

    await h.discord.wait_for(lambda: dms(h), message="a DM")
    await h.wait_job_ended("failed")
    assert await money(h) == [("held", 0.04)]


async def test_start_up_settles_money_by_whether_discord_had_the_result(
    conn: db.Database,
) -> None:
    ledger = Ledger(conn, default_credits=1.0, default_period="day")
    ids = {}
    for name in ("delivered", "undelivered", "failed", "held"):
        reservation = await ledger.reserve(GUILD_ID, MEMBER_ID, (), 0.04)
        gen_id = await generations.insert(conn, make_new_generation())
        await ledger.attach(reservation, gen_id)
        if name != "failed":
            await record_success(
                conn, gen_id, cost=0.05, cost_source="balance_drop", remaining_credits=9.0
            )
        if name == "held":
            await ledger.hold(reservation, 0.05, "balance_drop")
        if name == "delivered":
            await messages.record_delivery(
                conn, gen_id, channel_id=CHANNEL_ID, message_id=1, attachment_id=None, url=None
            )
        ids[name] = reservation.id

    settled = await ledger.settle_stale(older_than_s=0)

    states = {c.id: (c.state, c.amount) for c in await charges.of_server(conn, GUILD_ID)}
    assert states[ids["delivered"]] == ("committed", 0.05)
    assert states[ids["undelivered"]] == ("held", 0.05)
    assert states[ids["held"]] == ("held", 0.05)
    assert states[ids["failed"]] == ("released", 0)
    assert (settled.held, settled.committed, settled.released) == (1, 1, 1)
    status = await ledger.status(GUILD_ID, MEMBER_ID, ())
    assert status.used == pytest.approx(0.15) and status.held == 0


# -- item 13: kept results expire while the bot runs; no half-written file -----------------


async def test_kept_results_expire_every_hour_while_the_bot_runs(
    conn: db.Database, tmp_path: Path
) -> None:
    ledger = Ledger(conn, default_credits=1.0, default_period="day")
    results = ResultStore(conn, tmp_path / "results", retention_s=RETENTION_S)
    timer = ManualClock()
    offset = 0.0
    upkeep = Upkeep(results, ledger, timer=timer, clock=lambda: time.time() + offset)
    reservation = await ledger.reserve(GUILD_ID, MEMBER_ID, (), 0.04)
    gen_id = await generations.insert(conn, make_new_generation())
    await ledger.attach(reservation, gen_id)
    await record_success(conn, gen_id, cost_source="estimate")
    kept = await results.save(gen_id, b"paid for", "png")
    await ledger.hold(reservation, 0.04, "estimate")
    upkeep.start()
    try:
        await until(lambda: timer.sleeping)
        offset = RETENTION_S - HOUR_S / 2
        await advance(timer, HOUR_S)
        await until(lambda: timer.sleeping)
        assert await asyncio.to_thread(kept.exists)  # not expired yet

        offset = RETENTION_S + HOUR_S / 2
        await advance(timer, HOUR_S)
        await until(lambda: timer.sleeping)  # that hour's expiry is done
        assert not await asyncio.to_thread(kept.exists)
    finally:
        await upkeep.aclose()
    [charge] = await charges.of_server(conn, GUILD_ID)
    assert charge.state == "released"
    assert await generations.result_path(conn, gen_id) is None


async def test_a_save_cancelled_half_way_leaves_no_file(conn: db.Database, tmp_path: Path) -> None:
    results = ResultStore(conn, tmp_path / "results", retention_s=RETENTION_S)
    gen_id = await generations.insert(conn, make_new_generation())
    saving = asyncio.create_task(results.save(gen_id, b"x" * (64 * 1024 * 1024), "png"))
    await until(lambda: results.directory.is_dir() and any(results.directory.iterdir()))

    saving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await saving

    # Whatever the writing thread was doing has finished: nothing is half-written.
    await until(lambda: not any(p.suffix == ".tmp" for p in results.directory.iterdir()), 10)
    assert list(results.directory.iterdir()) == []
    assert await generations.result_path(conn, gen_id) is None


async def test_a_file_no_result_points_at_is_removed_at_start_up(h: Harness) -> None:
    stray = h.bot.core.results.directory / "77.png.tmp"
    await asyncio.to_thread(stray.parent.mkdir, parents=True, exist_ok=True)
    await asyncio.to_thread(stray.write_bytes, b"half written when the power went")
    await h.restart()
    assert not await asyncio.to_thread(stray.exists)
