"""Every way to ask for an edit writes its job row before the member sees it accepted:
a crash between the two must never lose an edit the member saw taken. (The kill -9 itself
is in tests/test_process.py; here Discord holds the acknowledgement while the test looks.)"""

from __future__ import annotations

import asyncio
from typing import Any

from tests.fake_discord.plumbing import Hold
from tests.harness import Harness
from tests.helpers import make_image
from tests.world import CHANNEL_ID, GUILD_ID, MEMBER_ID, OTHER_MEMBER_ID

CALLBACK = r"^/interactions/\d+/[^/]+/callback$"
REACTION = r"^/channels/\d+/messages/\d+/reactions/"


async def jobs_when_acknowledged(h: Harness, hold: Hold) -> list[tuple[int, str]]:
    """The job rows at the moment Discord receives the acknowledgement; then let it go."""
    await asyncio.wait_for(hold.arrived.wait(), 10)
    try:
        return [(j.user_id, j.state) for j in await h.jobs()]
    finally:
        hold.release.set()


async def first_result(h: Harness) -> dict[str, Any]:
    return await h.answer(await h.edit("make it night", h.upload(make_image(300, 200))))


async def submit_modal(h: Harness, modal: dict[str, Any], text: str, **extra: Any) -> None:
    [text_input] = [c for c in h.discord.components_of(modal) if c.get("type") == 4]
    submit = h.discord.modal_submit(
        modal["custom_id"], {text_input["custom_id"]: text},
        user_id=MEMBER_ID, guild_id=GUILD_ID, channel_id=CHANNEL_ID, **extra,
    )  # fmt: skip
    await h.discord.send_interaction(submit)


async def test_edit_command(h: Harness) -> None:
    hold = h.discord.hold_next("POST", CALLBACK)
    interaction = await h.edit("make it night")
    assert await jobs_when_acknowledged(h, hold) == [(MEMBER_ID, "queued")]
    assert hold.request is not None and hold.request.json["type"] == 5
    assert (await h.answer(interaction))["attachments"]


async def test_reply_to_a_result(h: Harness) -> None:
    step1 = await first_result(h)
    hold = h.discord.hold_next("PUT", REACTION)
    reply = await h.reply(step1, "add snow")
    _first, new = await jobs_when_acknowledged(h, hold)
    assert new == (MEMBER_ID, "queued")
    assert (await h.reply_answer(reply))["attachments"]


async def test_mention_with_an_image(h: Harness) -> None:
    message = h.discord.make_message(
        CHANNEL_ID, author_id=MEMBER_ID, content=f"<@{h.discord.bot_user_id}> make it night",
        attachments=[h.upload(make_image(200, 200))], mentions=[h.discord.bot_user_id],
    )  # fmt: skip
    hold = h.discord.hold_next("PUT", REACTION)
    await h.discord.dispatch("MESSAGE_CREATE", message)
    assert await jobs_when_acknowledged(h, hold) == [(MEMBER_ID, "queued")]
    assert (await h.reply_answer(message))["attachments"]


async def test_reroll_button(h: Harness) -> None:
    step1 = await first_result(h)
    hold = h.discord.hold_next("POST", CALLBACK)
    await h.click(step1, "reroll")
    _first, new = await jobs_when_acknowledged(h, hold)
    assert new == (MEMBER_ID, "queued")


async def test_edit_again_modal(h: Harness) -> None:
    step1 = await first_result(h)
    click = await h.click(step1, "again")
    modal = await h.discord.wait_for(lambda: h.discord.last_modal(click))
    hold = h.discord.hold_next("POST", CALLBACK)
    await submit_modal(h, modal, "add fireworks", message=step1)
    _first, new = await jobs_when_acknowledged(h, hold)
    assert new == (MEMBER_ID, "queued")


async def test_context_menu_modal(h: Harness) -> None:
    target = h.discord.make_message(
        CHANNEL_ID, author_id=OTHER_MEMBER_ID, attachments=[h.upload(make_image(200, 200))]
    )
    payload = h.discord.context_menu(
        "Edit image", target, user_id=MEMBER_ID, guild_id=GUILD_ID, channel_id=CHANNEL_ID
    )
    await h.discord.send_interaction(payload)
    modal = await h.discord.wait_for(lambda: h.discord.last_modal(payload["id"]))
    hold = h.discord.hold_next("POST", CALLBACK)
    await submit_modal(h, modal, "make it night")
    assert await jobs_when_acknowledged(h, hold) == [(MEMBER_ID, "queued")]
    assert (await h.reply_answer(target))["attachments"]
