"""How a queued edit ends for its member: the command or message that asked for it is done
once the edit is queued (nothing waits on its behalf), and whatever ends it later (its
result, a failure, a cancel, a restart) still reaches the member."""

from __future__ import annotations

import asyncio

import pytest

from bot.service import MSG_RESTARTING, MSG_RESTARTING_RUNNING
from tests.fake_discord import FLAG_EPHEMERAL
from tests.harness import Harness
from tests.test_queue_flow import bot_reply, hold_the_slot, result_of, wait_jobs
from tests.world import ADMIN_ID, MEMBER_ID, OTHER_MEMBER_ID

# The tasks discord.py runs a slash command, a button or a reply listener in.
HANDLERS = ("CommandTree-invoker", "discord.py: on_message", "discord-ui-")


def handlers_left() -> list[asyncio.Task[object]]:
    return [
        task
        for task in asyncio.all_tasks()
        if not task.done() and task.get_name().startswith(HANDLERS)
    ]


@pytest.mark.settings(segmind_max_concurrency=1)
async def test_queued_edits_leave_no_handler_waiting_and_still_reach_their_members(
    h: Harness,
) -> None:
    step1 = await result_of(h, await h.edit("make it night"))
    h.segmind.delay = 4.0  # long enough for the two below to be seen waiting
    await hold_the_slot(h, "someone else's", user_id=OTHER_MEMBER_ID)
    h.segmind.delay = 0.0
    waiting = await h.edit("wait for me", user_id=ADMIN_ID)
    reply = await h.reply(step1, "add snow")
    await wait_jobs(h, 4)

    # Both are acknowledged and queued; their handlers are done.
    await h.discord.wait_for(lambda: not handlers_left(), message="the handlers to end")
    assert h.bot.core.edits.queue.waiting_count == 2

    assert (await result_of(h, waiting))["attachments"]
    await h.discord.wait_for(
        lambda: [
            m
            for m in h.discord.messages.values()
            if (m.get("message_reference") or {}).get("message_id") == reply["id"]
            and m.get("attachments")
        ],
        message="the reply's result",
    )
    assert [c.json["prompt"] for c in h.api_calls()][1:] == [
        "someone else's",
        "wait for me",
        "add snow",
    ]


@pytest.mark.settings(segmind_max_concurrency=1)
async def test_a_restart_tells_each_waiting_member_their_edit_was_not_started(h: Harness) -> None:
    step1 = await result_of(h, await h.edit("make it night"))
    running = await hold_the_slot(h, "running", user_id=OTHER_MEMBER_ID)
    h.segmind.delay = 30  # the running edit cannot finish within the grace period
    waiting = await h.edit("wait for me", user_id=ADMIN_ID)
    reply = await h.reply(step1, "add snow")
    await wait_jobs(h, 4)
    await h.discord.wait_for(lambda: h.bot.core.edits.queue.waiting_count == 2)

    await h.bot.core.edits.shutdown(0)

    told = await h.wait_followup(waiting, "restarting")
    assert told["content"] == MSG_RESTARTING and told["flags"] & FLAG_EPHEMERAL
    assert (await bot_reply(h, reply, "restarting"))["content"] == MSG_RESTARTING
    stopped = await h.wait_followup(running, "restarting")
    assert stopped["content"] == MSG_RESTARTING_RUNNING
    assert [c.json["prompt"] for c in h.api_calls()] == ["make it night", "running"]
    states = {(j.user_id, j.state) for j in await h.jobs()}
    assert {(ADMIN_ID, "cancelled"), (MEMBER_ID, "cancelled")} <= states
