"""The queue as members see it, end to end: waiting, cancelling, limits, and delivery."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import pytest

from bot.db import generations, jobs, messages
from tests.fake_discord import FLAG_EPHEMERAL, FakeDiscord
from tests.harness import Harness, deliver_buttons
from tests.world import ADMIN_ID, MEMBER_ID, OTHER_MEMBER_ID

CHANNEL_POST = r"^/channels/\d+/messages$"
QUEUED = re.compile(r"In the queue: (you're next|\d+ ahead), about \d+ s\.")


def status_edits(h: Harness, interaction_id: int) -> list[dict[str, Any]]:
    """Bodies of the bot's edits of an interaction's placeholder (PATCH @original)."""
    token = h.discord.interaction(interaction_id).token
    return [
        r.json
        for r in h.discord.requests_to("PATCH", rf"^/webhooks/\d+/{token}/messages/@original$")
        if isinstance(r.json, dict)
    ]


async def wait_status(h: Harness, interaction_id: int, text: str) -> dict[str, Any]:
    """The first placeholder edit whose text contains `text`."""

    def find() -> dict[str, Any] | None:
        return next(
            (b for b in status_edits(h, interaction_id) if text in (b.get("content") or "")), None
        )

    return await h.discord.wait_for(find, message=f"a status {text!r}")  # type: ignore[return-value]


def cancel_ids(message: dict[str, Any]) -> list[str]:
    return [
        c["custom_id"]
        for c in FakeDiscord.components_of(message)
        if c.get("custom_id", "").startswith("kontext:cancel:")
    ]


async def bot_reply(h: Harness, message: dict[str, Any], text: str) -> dict[str, Any]:
    """The bot's reply to `message` containing `text` (a status or a short answer)."""

    def find() -> dict[str, Any] | None:
        return next(
            (
                m
                for m in h.discord.messages.values()
                if (m.get("message_reference") or {}).get("message_id") == message["id"]
                and m["author"]["id"] == str(h.discord.bot_user_id)
                and text in m["content"]
            ),
            None,
        )

    return await h.discord.wait_for(find, message=f"a reply {text!r}")  # type: ignore[return-value]


async def result_of(h: Harness, interaction_id: int) -> dict[str, Any]:
    """The result message posted for an interaction (not its status placeholder)."""

    async def find() -> dict[str, Any] | None:
        message_id = await generations.result_message_of_interaction(
            h.bot.core.database, interaction_id
        )
        return h.discord.messages.get(message_id) if message_id else None

    return await h.discord.wait_for(find, message="the result")  # type: ignore[return-value]


async def hold_the_slot(h: Harness, prompt: str = "first", *, user_id: int = MEMBER_ID) -> int:
    """A slow edit that takes the only slot (it is running when this returns); its id."""
    h.segmind.delay = max(h.segmind.delay, 1.5)
    interaction = await h.edit(prompt, user_id=user_id)
    await h.discord.wait_for(lambda: h.segmind.in_flight == 1, message="the edit to start")
    return interaction


async def wait_jobs(h: Harness, count: int) -> list[jobs.JobState]:
    async def enough() -> list[jobs.JobState] | None:
        rows = await h.jobs()
        return rows if len(rows) >= count else None

    return await h.discord.wait_for(enough, message=f"{count} job rows")  # type: ignore[return-value]


# -- waiting -------------------------------------------------------------------------------


@pytest.mark.settings(segmind_max_concurrency=1, status_update_interval_s=1.0)
async def test_waiting_members_see_their_place_then_editing_then_the_result(h: Harness) -> None:
    first = await hold_the_slot(h)
    second = await h.edit("second", user_id=OTHER_MEMBER_ID)
    await wait_jobs(h, 2)
    third = await h.edit("third", user_id=ADMIN_ID)

    queued = await wait_status(h, second, "In the queue")
    assert QUEUED.search(queued["content"]) and "you're next" in queued["content"]
    [job] = await h.jobs(OTHER_MEMBER_ID)
    assert cancel_ids(queued) == [f"kontext:cancel:{job.id}"]
    [button] = [
        c for c in FakeDiscord.components_of(queued) if c.get("custom_id") == cancel_ids(queued)[0]
    ]
    assert button["label"] == "Cancel"
    behind = await wait_status(h, third, "In the queue")
    assert QUEUED.search(behind["content"]) and "1 ahead" in behind["content"]

    # The first edit ends: the second starts (no Cancel any more), the third moves up.
    editing = await wait_status(h, second, "Editing...")
    assert not cancel_ids(editing)
    assert "you're next" in (await wait_status(h, third, "you're next"))["content"]

    results = [await result_of(h, i) for i in (first, second, third)]
    assert all(r["attachments"] for r in results)
    assert [c.json["prompt"] for c in h.api_calls()] == ["first", "second", "third"]

    async def all_done() -> bool:
        return [r.state for r in await h.jobs()] == ["done", "done", "done"]

    await h.discord.wait_for(all_done, message="every job to be done")
    # Each placeholder gave way to its result.
    assert all(h.discord.original_response(i) is None for i in (first, second, third))


# -- cancelling ----------------------------------------------------------------------------


@pytest.mark.settings(segmind_max_concurrency=1, status_update_interval_s=1.0)
async def test_cancel_a_waiting_edit_costs_nothing_and_only_its_member_can(h: Harness) -> None:
    first = await hold_the_slot(h)
    waiting = await h.edit("wait for me", user_id=OTHER_MEMBER_ID)
    await wait_status(h, waiting, "In the queue")
    placeholder = h.discord.original_response(waiting)
    assert placeholder is not None
    [cancel] = cancel_ids(placeholder)

    refused = await h.answer(await h.press(cancel, placeholder, user_id=MEMBER_ID))
    assert refused["flags"] & FLAG_EPHEMERAL
    assert "Only the member who asked" in refused["content"]

    pressed = await h.press(cancel, placeholder, user_id=OTHER_MEMBER_ID)
    told = await h.wait_followup(waiting, "Cancelled")
    assert told["flags"] & FLAG_EPHEMERAL
    assert told["content"] == "Cancelled. You were not charged."
    assert h.discord.callbacks[pressed][0]["type"] == 6  # the press itself is just acknowledged
    assert h.discord.original_response(waiting) is None  # no public Cancel button left behind

    again = await h.answer(await h.press(cancel, placeholder, user_id=OTHER_MEMBER_ID))
    assert "can't be cancelled" in again["content"] and again["flags"] & FLAG_EPHEMERAL

    assert (await result_of(h, first))["attachments"]
    assert [c.json["prompt"] for c in h.api_calls()] == ["first"]
    assert await h.edits(OTHER_MEMBER_ID) == []
    assert await h.charges(OTHER_MEMBER_ID) == []
    [job] = await h.jobs(OTHER_MEMBER_ID)
    assert job.state == "cancelled"


@pytest.mark.settings(segmind_max_concurrency=1, status_update_interval_s=1.0)
async def test_a_waiting_reply_gets_a_status_reply_whose_cancel_works(h: Harness) -> None:
    step1 = await result_of(h, await h.edit("make it night"))
    await hold_the_slot(h, "someone else's", user_id=OTHER_MEMBER_ID)
    reply = await h.reply(step1, "add snow")

    status = await bot_reply(h, reply, "In the queue")
    assert QUEUED.search(status["content"]) and status["flags"] == 0
    [cancel] = cancel_ids(status)
    await h.press(cancel, status, user_id=MEMBER_ID)

    await bot_reply(h, reply, "Cancelled. You were not charged.")
    await h.discord.wait_for(lambda: int(status["id"]) in h.discord.deleted_messages)
    assert [c.json["prompt"] for c in h.api_calls()] == ["make it night", "someone else's"]
    assert len(await h.edits(MEMBER_ID)) == 1


@pytest.mark.settings(max_queued_per_user=3, max_inflight_per_user=1)
async def test_a_fifth_edit_while_three_wait_is_refused_and_costs_nothing(h: Harness) -> None:
    h.segmind.delay = 2.0
    for n in range(1, 5):
        await h.edit(f"edit {n}")
        await wait_jobs(h, n)
    await h.discord.wait_for(lambda: h.segmind.in_flight == 1)
    credits = h.segmind.credits

    answer = await h.answer(await h.edit("edit 5"))

    assert answer["flags"] & FLAG_EPHEMERAL
    assert "already have 3 edits waiting" in answer["content"]
    assert "Nothing was charged" in answer["content"]
    assert len(await h.jobs()) == 4  # the refused one was never written down
    assert len(h.api_calls()) == 1 and h.segmind.credits == credits
    assert len(await h.edits(MEMBER_ID)) == 1
    assert [c.state for c in await h.charges()] == ["reserved"]


@pytest.mark.settings(max_queued_total=1, segmind_max_concurrency=1)
async def test_past_the_total_queue_bound_new_edits_are_refused_at_once_and_cost_nothing(
    h: Harness,
) -> None:
    h.segmind.delay = 2.0
    await hold_the_slot(h, "running")
    await h.edit("waiting", user_id=OTHER_MEMBER_ID)
    await wait_jobs(h, 2)
    credits = h.segmind.credits

    answer = await h.answer(await h.edit("one too many", user_id=ADMIN_ID))

    assert answer["flags"] & FLAG_EPHEMERAL
    assert "1 edit waiting" in answer["content"] and "Nothing was charged" in answer["content"]
    assert len(await h.jobs()) == 2  # never written down
    assert await h.charges(ADMIN_ID) == []
    assert len(h.api_calls()) == 1 and h.segmind.credits == credits


# -- the per-minute limit -------------------------------------------------------------------


@pytest.mark.settings(
    quota_default_credits=0.40, segmind_rpm=40, max_queued_per_user=40, alert_below_credits=0
)
async def test_edits_refused_before_their_api_call_leave_the_rate_limit_to_others(
    h: Harness,
) -> None:
    # 40 edits at once from a member whose allowance covers 10: 30 are refused before any
    # API call. Only the 10 calls sent may count against the 40 starts a minute.
    h.segmind.delay = 0.2  # all 40 are queued before the first is charged
    for n in range(40):
        await h.edit(f"burst {n}")

    async def burst_over() -> bool:
        rows = await h.jobs()
        done = all(r.state != "queued" for r in rows)
        return len(rows) == 40 and done and not h.bot.core.edits.queue.jobs()

    await h.discord.wait_for(burst_over, 20, message="the 40 edits to be answered")
    assert len(h.api_calls()) == 10

    # Another member is not held back by slots nobody used.
    started = time.monotonic()
    other = await h.edit("my turn", user_id=OTHER_MEMBER_ID)
    assert (await result_of(h, other))["attachments"]
    assert time.monotonic() - started < 10
    assert len(h.api_calls()) == 11


# -- delivery ------------------------------------------------------------------------------


@pytest.fixture
def quick_retries(h: Harness) -> None:
    h.bot.core.delivery.backoff_s = 0.01


@pytest.mark.usefixtures("quick_retries")
async def test_a_result_upload_that_discord_refuses_twice_is_retried_and_then_removed(
    h: Harness,
) -> None:
    h.discord.fail_next("POST", CHANNEL_POST, 503, times=2)
    interaction = await h.edit("make it night")

    result = await result_of(h, interaction)

    assert result["attachments"]
    posts = h.discord.requests_to("POST", CHANNEL_POST)
    assert [r.status for r in posts] == [503, 503, 200]
    assert len([m for m in h.channel_messages() if m.get("attachments")]) == 1
    await h.discord.wait_for(
        lambda: delivered_from(h, int(result["id"])), message="the kept copy to be forgotten"
    )
    assert list(h.bot.core.results.directory.iterdir()) == []  # delivered: the kept copy is gone
    [charge] = await h.charges()
    assert charge.state == "committed"


async def test_a_discord_500_on_the_result_upload_is_retried_then_succeeds(h: Harness) -> None:
    h.discord.fail_next("POST", CHANNEL_POST, 500)  # discord.py itself retries a 500
    result = await result_of(h, await h.edit("make it night"))
    assert result["attachments"]
    assert [r.status for r in h.discord.requests_to("POST", CHANNEL_POST)] == [500, 200]
    assert len([m for m in h.channel_messages() if m.get("attachments")]) == 1


async def fail_every_upload(h: Harness) -> tuple[generations.Generation, dict[str, Any]]:
    """An edit whose result Discord refuses to take, every time; its generation and the
    answer the member got."""
    h.discord.fail_next("POST", CHANNEL_POST, 503, times=h.bot.core.delivery.attempts)
    answer = await h.answer(await h.edit("make it night"))
    [gen] = await h.edits(MEMBER_ID)
    return gen, answer


async def delivered_from(h: Harness, message_id: int) -> int | None:
    """The generation whose result Discord has in `message_id`, once its kept copy is
    forgotten (None until then)."""
    shown = await messages.result_message(h.bot.core.database, message_id)
    gen = shown and await generations.get(h.bot.core.database, shown.generation_id)
    if gen and gen.result_path is None and gen.result_message_id == message_id:
        return gen.id
    return None


@pytest.mark.usefixtures("quick_retries")
async def test_when_uploads_keep_failing_the_member_is_told_and_the_paid_result_is_kept(
    h: Harness,
) -> None:
    gen, answer = await fail_every_upload(h)

    assert answer["flags"] & FLAG_EPHEMERAL and not answer.get("attachments")
    assert "kept for you" in answer["content"] and "/history" in answer["content"]
    assert len(h.discord.requests_to("POST", CHANNEL_POST)) == h.bot.core.delivery.attempts
    assert gen.status == "succeeded" and gen.result_message_id is None
    kept = Path(gen.result_path or "")
    assert kept.parent == h.bot.core.results.directory
    assert await asyncio.to_thread(kept.is_file)


@pytest.mark.usefixtures("quick_retries")
async def test_a_kept_result_is_delivered_from_history_once_discord_takes_it(
    h: Harness,
) -> None:
    gen, _ = await fail_every_upload(h)
    kept = await asyncio.to_thread(Path(gen.result_path or "").read_bytes)
    history = await h.open_history()
    assert "not delivered" in history["embeds"][0]["description"]
    [button] = deliver_buttons(history)
    assert button["label"] == f"Deliver #{gen.id}"

    click = await h.press(button["custom_id"], history, user_id=MEMBER_ID)

    await h.wait_followup(click, "Delivered")
    [result] = [m for m in h.channel_messages() if m.get("attachments")]
    assert result["content"] == f"<@{MEMBER_ID}> your edit is ready."
    assert h.discord.attachment_bytes(result["attachments"][0]) == kept
    recorded = await h.discord.wait_for(
        lambda: delivered_from(h, int(result["id"])), message="the delivery to be recorded"
    )
    assert recorded == gen.id
    assert list(h.bot.core.results.directory.iterdir()) == []
    assert len(h.api_calls()) == 1  # delivered from disk, not edited again
    # Delivered once: the button is gone from a fresh /history.
    assert deliver_buttons(await h.open_history()) == []


@pytest.mark.usefixtures("quick_retries")
async def test_pressing_deliver_twice_posts_the_kept_result_once(h: Harness) -> None:
    await fail_every_upload(h)
    history = await h.open_history()
    [button] = deliver_buttons(history)

    clicks = [await h.press(button["custom_id"], history, user_id=MEMBER_ID) for _ in range(2)]

    answers = [
        (await h.discord.wait_for(lambda c=c: h.discord.followups(c), message="an answer"))[0]
        for c in clicks
    ]
    assert len([m for m in h.channel_messages() if m.get("attachments")]) == 1
    assert sorted(a["content"].split(":")[0] for a in answers) == [
        "Delivered",
        "That result is no longer kept (or was delivered already).",
    ]


@pytest.mark.usefixtures("quick_retries")
async def test_deliver_while_discord_still_refuses_tells_the_member(h: Harness) -> None:
    gen, _ = await fail_every_upload(h)
    history = await h.open_history()
    [button] = deliver_buttons(history)
    h.discord.fail_next("POST", CHANNEL_POST, 503, times=h.bot.core.delivery.attempts)

    click = await h.press(button["custom_id"], history, user_id=MEMBER_ID)

    [answer] = await h.discord.wait_for(lambda: h.discord.followups(click), 2.0)  # type: ignore[misc]
    assert answer["flags"] & FLAG_EPHEMERAL and "/history" in answer["content"]
    [row] = await h.edits(MEMBER_ID)
    assert row.result_path == gen.result_path  # still kept for the next try
