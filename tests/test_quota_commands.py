"""Quotas end to end: `/quota`, what each result says, refusals before any spend, refunds,
real costs, periods, overrides, the account floor, alerts and crash recovery."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from bot import db
from bot.db import credits as credit_readings
from bot.db import generations, quotas
from bot.ledger import Ledger
from tests.fake_discord import FLAG_EPHEMERAL
from tests.harness import Harness, fields
from tests.helpers import make_new_generation, record_success
from tests.server_actions import user_opt
from tests.world import ALERTS_CHANNEL_ID, GUILD_ID, MEMBER_ID, OTHER_MEMBER_ID

pytestmark = pytest.mark.settings(quota_default_credits=0.40, alert_below_credits=0)


async def quota(
    h: Harness, user_id: int = MEMBER_ID, member_roles: tuple[int, ...] = ()
) -> dict[str, str]:
    """`/quota` as the member sees it: a private embed."""
    answer = await h.run_command("quota", user_id=user_id, member_roles=member_roles)
    assert answer["flags"] & FLAG_EPHEMERAL
    return fields(answer)


async def alert_messages(h: Harness) -> list[dict[str, Any]]:
    """Account alerts: they reach the operator, never a server's alerts channel."""
    await h.bot.core.alerts.drain()
    assert h.channel_messages(ALERTS_CHANNEL_ID) == []
    return h.direct_messages()


async def test_quota_shows_used_left_edits_and_when_it_resets(h: Harness) -> None:
    before = await quota(h)
    assert before["Used today"] == "0.00 of 0.40 credits"
    assert before["Left"] == "0.40 credits\nabout 10 edits"
    assert before["Resets"].startswith("<t:") and before["Resets"].endswith(":R>")
    for prompt in ("one", "two"):
        await h.answer(await h.edit(prompt))
    after = await quota(h)
    assert after["Used today"] == "0.08 of 0.40 credits"
    assert after["Left"] == "0.32 credits\nabout 8 edits"
    rows = await h.server_charges()
    assert [(r.state, r.amount) for r in rows] == [("committed", 0.04)] * 2
    # Another member's allowance is their own.
    assert (await quota(h, OTHER_MEMBER_ID))["Used today"] == "0.00 of 0.40 credits"


async def test_every_result_shows_what_it_cost_and_what_is_left(h: Harness) -> None:
    result = fields(await h.answer(await h.edit("add a hat")))
    assert result["Cost"] == "~0.04 credits"  # no earlier balance reading: an estimate
    assert result["Left"] == "0.36 credits"
    result = fields(await h.answer(await h.edit("add a scarf")))
    assert (result["Cost"], result["Left"]) == ("0.04 credits", "0.32 credits")


@pytest.mark.settings(quota_default_credits=0.05)
async def test_a_member_who_is_out_is_told_before_anything_is_spent(h: Harness) -> None:
    await h.answer(await h.edit("first"))
    answer = await h.answer(await h.edit("second"))
    assert answer["flags"] & FLAG_EPHEMERAL
    assert "You're out of edits for now: 0.01 of your 0.05 credits left" in answer["content"]
    assert "It resets <t:" in answer["content"]
    assert len(h.api_calls()) == 1
    assert len(await h.server_charges()) == 1  # the refused edit never reserved anything
    assert await generations.count_by_status(h.bot.core.database) == {"succeeded": 1}


async def test_cost_is_the_header_drop_and_overlapping_calls_use_the_estimate(
    h: Harness,
) -> None:
    h.segmind.cost = 0.05  # the real price differs from the configured 0.04 estimate
    await h.answer(await h.edit("first"))  # nothing to compare with: estimate
    solo = fields(await h.answer(await h.edit("second")))
    assert solo["Cost"] == "0.05 credits"
    h.segmind.delay = 0.3
    # Two members' edits run side by side: neither drop can be told apart.
    both = [await h.edit("left"), await h.edit("right", user_id=OTHER_MEMBER_ID)]
    overlapped = [fields(await h.answer(i)) for i in both]
    assert [f["Cost"] for f in overlapped] == ["~0.05 credits"] * 2  # the observed average
    assert h.segmind.max_in_flight == 2
    h.segmind.delay = 0
    h.segmind.send_cost_header = True
    await h.answer(await h.edit("with x-cost"))

    rows = await h.server_charges()
    summary = [(r.user_id, r.cost_source, round(r.amount, 4)) for r in rows]
    assert summary[:2] == [(MEMBER_ID, "estimate", 0.04), (MEMBER_ID, "balance_drop", 0.05)]
    assert sorted(summary[2:4]) == [
        (MEMBER_ID, "estimate", 0.05),
        (OTHER_MEMBER_ID, "estimate", 0.05),
    ]
    assert summary[4:] == [(MEMBER_ID, "header", 0.05)]
    edits = await generations.of_server(h.bot.core.database, GUILD_ID)
    by_generation = {r.generation_id: (r.amount, r.cost_source) for r in rows}
    # The member pays exactly what the generation is recorded as costing.
    assert {g.id: (g.cost, g.cost_source) for g in edits} == by_generation
    assert (await quota(h))["Used today"] == "0.19 of 0.40 credits"
    assert (await quota(h, OTHER_MEMBER_ID))["Used today"] == "0.05 of 0.40 credits"


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        pytest.param({"status": 401}, "admins have been told", id="key-rejected"),
        pytest.param(
            {"status": 406, "body": {"error": "Insufficient credits"}},
            "admins have been told",
            id="out-of-credits",
        ),
        pytest.param({"status": 406}, "refused", id="another-406"),
        pytest.param({"status": 422, "body": {"error": "nope"}}, "refused", id="refused"),
        pytest.param({"status": 429, "times": 2}, "busy", id="rate-limited"),
        pytest.param({"status": 500}, "try again", id="server-error"),
        pytest.param(
            {"status": 503, "headers": {"Retry-After": "0"}, "times": 2},
            "busy",
            id="come-back-later",
        ),
        pytest.param(
            {"delay": 2.0},
            "took too long",
            id="timeout",
            marks=pytest.mark.settings(quota_default_credits=0.40, segmind_timeout_s=0.5),
        ),
        pytest.param({"not_image": True}, "broken image", id="not-an-image"),
    ],
)
async def test_every_failure_is_refunded(h: Harness, fault: dict, expected: str) -> None:
    before = await quota(h)
    if "delay" in fault:
        h.segmind.delay_next(fault["delay"])
    elif "not_image" in fault:
        h.segmind.not_image_next()
    else:
        h.segmind.fail_next(**fault)
    answer = await h.answer(await h.edit("make it pop"))
    assert answer["flags"] & FLAG_EPHEMERAL
    assert expected in answer["content"] and "not charged" in answer["content"]
    [charge] = await h.server_charges()
    assert (charge.state, charge.amount, charge.reserved) == ("released", 0, 0.04)
    assert charge.generation_id is not None and charge.settled_at is not None
    assert await quota(h) == before


async def test_usage_starts_again_when_the_period_rolls_over(h: Harness) -> None:
    clock = h.bot.core.ledger.clock
    h.bot.core.ledger.clock = lambda: clock() - 86400  # yesterday
    await h.answer(await h.edit("yesterday's edit"))
    assert (await quota(h))["Used today"] == "0.04 of 0.40 credits"
    h.bot.core.ledger.clock = clock  # midnight has passed
    today = await quota(h)
    assert today["Used today"] == "0.00 of 0.40 credits"
    assert today["Left"] == "0.40 credits\nabout 10 edits"
    [charge] = await h.server_charges()
    assert charge.state == "committed" and charge.created_at < clock() - 86000


@pytest.mark.settings(quota_default_credits=0.04)
async def test_role_and_member_overrides_decide_the_allowance(h: Harness) -> None:
    await h.add_role(7001, "Artists", members=(MEMBER_ID,))
    await h.add_role(7002, "Patrons", members=(MEMBER_ID,))
    await h.admin("quota", "role", role={"type": 8, "value": 7001}, credits=0.20)
    await h.admin("quota", "role", role={"type": 8, "value": 7002}, credits=0.12)
    artist = await quota(h, member_roles=(7001, 7002))
    assert artist["Used today"] == "0.00 of 0.20 credits"  # the highest role wins
    assert (await quota(h, OTHER_MEMBER_ID))["Used today"] == "0.00 of 0.04 credits"

    await h.admin("quota", "set", member=user_opt(MEMBER_ID), credits=0.08)
    answer = await h.run_command("quota", member_roles=(7001, 7002))
    assert fields(answer)["Used today"] == "0.00 of 0.08 credits"  # their own beats roles
    assert "an admin set for you" in answer["embeds"][0]["footer"]["text"]

    database = h.bot.core.database
    assert await quotas.overrides(database, "role", GUILD_ID) == {7001: 0.20, 7002: 0.12}
    assert await quotas.overrides(database, "member", GUILD_ID) == {MEMBER_ID: 0.08}


async def test_a_blocked_member_cannot_start_edits_and_is_told_why(h: Harness) -> None:
    await h.admin("block", member=user_opt(MEMBER_ID), reason="posting other people's photos")
    answer = await h.answer(await h.edit("anything"))
    assert answer["flags"] & FLAG_EPHEMERAL
    assert "blocked you from editing" in answer["content"]
    assert "Reason: posting other people's photos" in answer["content"]
    assert len(h.api_calls()) == 0 and await h.server_charges() == []
    shown = await h.run_command("quota")
    assert "You are blocked from editing" in shown["embeds"][0]["description"]


@pytest.mark.settings(account_reserve_credits=99.95)
async def test_the_account_floor_stops_new_edits_and_alerts_once(h: Harness) -> None:
    await h.choose_alerts_channel()
    await h.answer(await h.edit("one"))  # balance 99.96: above the reserve
    await h.answer(await h.edit("two"))  # balance 99.92: under it from now on
    for prompt in ("three", "four"):
        answer = await h.answer(await h.edit(prompt))
        assert answer["flags"] & FLAG_EPHEMERAL
        assert "can't edit images right now; the admins have been told" in answer["content"]
        assert "not charged" in answer["content"]
    assert len(h.api_calls()) == 2
    [alert] = await alert_messages(h)
    assert "account balance 99.92 is under the reserve 99.95" in alert["content"]
    assert "ACCOUNT_RESERVE_CREDITS" in alert["content"]
    assert [r.state for r in await h.server_charges()] == ["committed"] * 2
    assert "paused for everyone" in (await h.run_command("quota"))["embeds"][0]["description"]


async def test_out_of_credits_stops_new_edits_and_alerts_once(h: Harness) -> None:
    await h.choose_alerts_channel()
    h.segmind.credits = 0.02
    for prompt in ("one", "two", "three"):
        answer = await h.answer(await h.edit(prompt))
        assert "can't edit images right now" in answer["content"]
    assert len(h.api_calls()) == 1  # the 406; the rest were refused without a call
    [alert] = await alert_messages(h)
    assert "out of credits" in alert["content"] and "/operator check" in alert["content"]
    assert [r.state for r in await h.server_charges()] == ["released"]


async def test_a_top_up_and_a_check_let_edits_run_again(h: Harness) -> None:
    h.segmind.credits = 0.06
    await h.answer(await h.edit("one"))  # balance 0.02
    await h.answer(await h.edit("two"))  # 406: halted
    h.segmind.top_up(10)
    answer = await h.operator("check")
    assert "The key works and edits are running" in answer["content"]
    assert "Balance: 9.98" in answer["content"]
    result = fields(await h.answer(await h.edit("three")))
    assert result["Cost"] == "0.04 credits"
    readings = await credit_readings.credit_readings(h.bot.core.database)
    assert [r.remaining for r in readings] == [0.02, 9.98, 9.94]
    credits = fields(await h.operator("credits"))
    assert credits["Balance"].startswith("9.94 credits")
    assert credits["Topped up this month"] == "9.96"  # the check's own cost is not known
    assert credits["This month"] == "0.08"


@pytest.mark.settings(alert_below_credits=99.93)
async def test_a_low_balance_alerts_once(h: Harness) -> None:
    await h.choose_alerts_channel()
    for prompt in ("one", "two", "three", "four"):
        await h.answer(await h.edit(prompt))  # 99.96, 99.92, 99.88, 99.84
    [alert] = await alert_messages(h)
    assert "balance is down to 99.92 credits (alert level 99.93)" in alert["content"]


async def test_repeated_api_failures_alert_once(h: Harness) -> None:
    await h.choose_alerts_channel()
    h.segmind.fail_next(500, times=4)  # never retried: the model may have run
    for prompt in ("one", "two", "three", "four"):
        assert "try again" in (await h.answer(await h.edit(prompt)))["content"]
    [alert] = await alert_messages(h)
    assert "The last 3 edits failed at Segmind" in alert["content"]
    assert [r.state for r in await h.server_charges()] == ["released"] * 4


@pytest.fixture
async def crash_leftovers(db_path: Path) -> dict[str, int]:
    """What a bot killed between reserve and commit leaves in its database file: one
    edit whose 200 was recorded but not yet charged, one whose call never returned."""
    database = await db.connect(db_path)
    ledger = Ledger(database, default_credits=0.40, default_period="day")
    ids = {}
    for name in ("succeeded", "pending"):
        reservation = await ledger.reserve(GUILD_ID, MEMBER_ID, (), 0.04)
        generation = await generations.insert(database, make_new_generation())
        await ledger.attach(reservation, generation)
        ids[name] = reservation.id
    await record_success(database, 1, cost=0.05, cost_source="balance_drop", remaining_credits=40.0)
    await database.close()
    return ids


async def test_a_crash_between_reserve_and_commit_is_settled_at_start_up(
    crash_leftovers: dict[str, int],
    h: Harness,  # leftovers first: the bot starts on them
) -> None:
    rows = {r.id: r for r in await h.server_charges()}
    succeeded = rows[crash_leftovers["succeeded"]]
    # Its result never reached Discord: held (counted as used) until delivered or expired.
    assert (succeeded.state, succeeded.amount) == ("held", 0.05)
    assert succeeded.cost_source == "balance_drop"
    pending = rows[crash_leftovers["pending"]]
    assert (pending.state, pending.amount) == ("released", 0)
    assert await generations.count_by_status(h.bot.core.database) == {"succeeded": 1, "failed": 1}
    assert (await quota(h))["Used today"] == "0.05 of 0.40 credits"


@pytest.fixture
async def low_reading(db_path: Path) -> None:
    database = await db.connect(db_path)
    await credit_readings.add_credit_reading(database, 3.0, None)
    await database.close()


@pytest.mark.settings(account_reserve_credits=5.0)
async def test_the_floor_holds_from_the_first_edit_after_a_restart(
    low_reading: None, h: Harness
) -> None:
    answer = await h.answer(await h.edit("one"))
    assert "can't edit images right now" in answer["content"]
    assert len(h.api_calls()) == 0 and await h.server_charges() == []


@pytest.mark.settings(max_inflight_per_user=6, max_queued_per_user=6)
async def test_concurrent_edits_never_overspend_an_allowance(h: Harness) -> None:
    await h.admin("quota", "set", member=user_opt(MEMBER_ID), credits=0.12)
    h.segmind.delay = 0.2
    ids = [await h.edit(f"edit {i}") for i in range(6)]
    answers = await asyncio.gather(*(h.answer(i) for i in ids))
    refused = [a for a in answers if a["flags"] & FLAG_EPHEMERAL]
    assert len(refused) == 3 and all("out of edits" in a["content"] for a in refused)
    assert len(h.api_calls()) == 3
    assert (await quota(h))["Left"] == "0.00 credits\nabout 0 edits"
