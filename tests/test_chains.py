"""Reply to iterate, result buttons, the context menu and /history, end to end."""

from __future__ import annotations

import time

import pytest

from bot.db import generations, messages
from tests.fake_discord import FLAG_EPHEMERAL
from tests.harness import Harness, deliver_buttons
from tests.helpers import forge_crash_during_upload, make_image, open_image
from tests.world import ADMIN_ID, CHANNEL_ID, GUILD_ID, MEMBER_ID, OTHER_MEMBER_ID


def embed_text(message: dict) -> str:
    [embed] = message["embeds"]
    return embed["description"] + " " + embed["footer"]["text"]


def image_of(h: Harness, message: dict) -> bytes:
    return h.discord.attachment_bytes(message["attachments"][0])


async def first_result(h: Harness, prompt: str = "make it night", **options: object) -> dict:
    return await h.answer(await h.edit(prompt, h.upload(make_image(300, 200)), **options))


async def test_a_three_step_chain_of_replies_links_every_step(h: Harness) -> None:
    step1 = await first_result(h)
    assert "step 1" in embed_text(step1)
    # The /edit placeholder ("thinking...") gave way to the channel message.
    await h.discord.wait_for(
        lambda: not [m for m in h.channel_messages() if m.get("interaction_metadata")]
    )

    reply1 = await h.reply(step1, "add snow")
    step2 = await h.reply_answer(reply1)
    reply2 = await h.reply(step2, "now a red lighthouse --steps 20")
    step3 = await h.reply_answer(reply2)

    assert "step 2" in embed_text(step2) and "step 3" in embed_text(step3)
    calls = h.api_calls()
    assert len(calls) == 3
    # Each step's input is the previous result's own image on Discord's CDN.
    assert (
        calls[1].json["input_image"].split("?")[0] == step1["attachments"][0]["url"].split("?")[0]
    )
    assert (
        calls[2].json["input_image"].split("?")[0] == step2["attachments"][0]["url"].split("?")[0]
    )
    assert calls[1].json["prompt"] == "add snow"
    assert calls[2].json["num_inference_steps"] == 20
    g1, g2, g3 = await h.edits()
    assert (g1.parent_id, g2.parent_id, g3.parent_id) == (None, g1.id, g2.id)
    assert g2.source == g3.source == "reply"
    assert await generations.chain_step(h.bot.core.database, g3.id) == 3
    # Twice inverted by the stand-in: step 3 is the inverse of step 2.
    assert open_image(image_of(h, step3)).convert("RGB").getpixel((10, 10)) == tuple(
        255 - c for c in open_image(image_of(h, step2)).convert("RGB").getpixel((10, 10))
    )


async def test_a_reply_keeps_an_explicit_seed_and_otherwise_draws_a_new_one(h: Harness) -> None:
    fixed = await first_result(h, seed=77)
    step2 = await h.reply_answer(await h.reply(fixed, "again"))
    loose = await first_result(h, "other")
    await h.reply_answer(await h.reply(loose, "again"))
    seeds = [c.json["seed"] for c in h.api_calls()]
    assert seeds[0] == seeds[1] == 77
    assert "`77`" in str(step2["embeds"])
    assert seeds[2] != seeds[3] or seeds[2] == seeds[3] == 0  # random draws differ


async def test_the_bot_shows_it_is_working_on_a_reply(h: Harness) -> None:
    h.segmind.delay = 0.3
    step1 = await first_result(h)
    reply = await h.reply(step1, "more")
    await h.reply_answer(reply)
    path = rf"/channels/{CHANNEL_ID}/messages/{reply['id']}/reactions/"
    methods = await h.discord.wait_for(
        lambda: (
            len(h.discord.requests_to("*", path)) >= 2
            and [r.method for r in h.discord.requests_to("*", path)]
        )
    )
    assert methods == ["PUT", "DELETE"]


async def test_a_reply_with_hidden_text_gets_one_hint(h: Harness) -> None:
    step1 = await first_result(h)
    hidden = await h.reply(step1, "make it blue", ping=False)
    hint = await h.reply_answer(hidden)
    assert "with ping" in hint["content"] and "buttons" in hint["content"]
    again = await h.reply(step1, "make it green", ping=False)
    await h.reply_answer(await h.reply(step1, "fine, pinging", ping=True))
    assert not [
        m for m in h.discord.messages.values()
        if (m.get("message_reference") or {}).get("message_id") == again["id"]
    ]  # fmt: skip
    assert len(h.api_calls()) == 2


@pytest.mark.settings(message_content_intent=True)
async def test_with_the_content_intent_any_reply_works(h: Harness) -> None:
    step1 = await first_result(h)
    step2 = await h.reply_answer(await h.reply(step1, "make it blue", ping=False))
    assert step2["attachments"]
    assert h.api_calls()[-1].json["prompt"] == "make it blue"


async def test_mentioning_the_bot_with_an_image_edits_it(h: Harness) -> None:
    upload = h.upload(make_image(200, 200))
    message = h.discord.make_message(
        CHANNEL_ID,
        author_id=MEMBER_ID,
        content=f"<@{h.discord.bot_user_id}> make it night --ar 1:1",
        attachments=[upload],
        mentions=[h.discord.bot_user_id],
    )
    await h.discord.dispatch("MESSAGE_CREATE", message)
    result = await h.reply_answer(message)
    assert result["attachments"]
    [call] = h.api_calls()
    assert call.json["prompt"] == "make it night"
    assert call.json["aspect_ratio"] == "1:1"
    assert call.json["input_image"].split("?")[0] == upload["url"].split("?")[0]


async def test_mentioning_the_bot_in_a_reply_to_an_image_edits_that_image(h: Harness) -> None:
    upload = h.upload(make_image(200, 200))
    photo = h.discord.make_message(CHANNEL_ID, author_id=OTHER_MEMBER_ID, attachments=[upload])
    ask = await h.reply(photo, f"<@{h.discord.bot_user_id}> add a hat")
    result = await h.reply_answer(ask)
    assert result["attachments"]
    assert h.api_calls()[0].json["input_image"].split("?")[0] == upload["url"].split("?")[0]


async def test_a_mention_without_an_image_explains_how(h: Harness) -> None:
    message = h.discord.make_message(
        CHANNEL_ID, author_id=MEMBER_ID, content=f"<@{h.discord.bot_user_id}> hello",
        mentions=[h.discord.bot_user_id],
    )  # fmt: skip
    await h.discord.dispatch("MESSAGE_CREATE", message)
    answer = await h.reply_answer(message)
    assert "Attach an image" in answer["content"]
    assert h.api_calls() == []


def bot_reactions(h: Harness, message: dict) -> list[str]:
    stored = h.discord.messages[int(message["id"])]
    return [r["emoji"]["name"] for r in stored.get("reactions", []) if r["me"]]


async def test_refused_mentions_get_one_public_answer_per_half_minute_then_a_reaction(
    h: Harness,
) -> None:
    asks = []
    for n in range(3):
        ask = h.discord.make_message(
            CHANNEL_ID, author_id=MEMBER_ID, content=f"<@{h.discord.bot_user_id}> hello {n}",
            mentions=[h.discord.bot_user_id],
        )  # fmt: skip
        await h.discord.dispatch("MESSAGE_CREATE", ask)
        asks.append(ask)
    assert "Attach an image" in (await h.reply_answer(asks[0]))["content"]
    for ask in asks[1:]:
        await h.discord.wait_for(lambda ask=ask: bot_reactions(h, ask) == ["\N{CROSS MARK}"])
    answers = [m for m in h.channel_messages() if m["author"]["id"] == str(h.discord.bot_user_id)]
    assert len(answers) == 1
    # Another member's refusal is answered: the limit is per member.
    other = h.discord.make_message(
        CHANNEL_ID, author_id=OTHER_MEMBER_ID, content=f"<@{h.discord.bot_user_id}> hi",
        mentions=[h.discord.bot_user_id],
    )  # fmt: skip
    await h.discord.dispatch("MESSAGE_CREATE", other)
    assert "Attach an image" in (await h.reply_answer(other))["content"]


async def _deleted(h: Harness, message_id: int) -> bool:
    shown = await messages.result_message(h.bot.core.database, message_id)
    return shown is not None and shown.deleted_at is not None


async def test_a_reply_to_a_deleted_result_gets_a_clear_answer(h: Harness) -> None:
    step1 = await first_result(h)
    message_id = int(step1["id"])
    h.discord.deleted_messages[message_id] = h.discord.messages.pop(message_id)
    await h.discord.dispatch(
        "MESSAGE_DELETE",
        {"id": step1["id"], "channel_id": str(CHANNEL_ID), "guild_id": str(GUILD_ID)},
    )
    await h.discord.wait_for(lambda: _deleted(h, message_id), message="the deletion recorded")
    reply = h.discord.make_message(
        CHANNEL_ID, author_id=MEMBER_ID, content=f"<@{h.discord.bot_user_id}> more",
        mentions=[h.discord.bot_user_id],
    )  # fmt: skip
    reply["message_reference"] = {"message_id": step1["id"], "channel_id": str(CHANNEL_ID)}
    await h.discord.dispatch("MESSAGE_CREATE", reply)
    answer = await h.reply_answer(reply)
    assert "was deleted" in answer["content"]
    assert len(h.api_calls()) == 1
    # The chain is stored: the deleted result's parameters and image URL are still known.
    [row] = await h.edits()
    assert row.result_url and row.prompt == "make it night"


async def test_reroll_uses_the_same_input_and_prompt_with_a_new_seed(h: Harness) -> None:
    step1 = await first_result(h, seed=5)
    click = await h.click(step1, "reroll")
    await h.discord.wait_for(lambda: len(h.api_calls()) == 2)
    g1, g2 = await h.discord.wait_for(lambda: _two_done(h))
    first, second = h.api_calls()
    assert second.json["input_image"] == first.json["input_image"]
    assert second.json["prompt"] == first.json["prompt"]
    assert second.json["seed"] != 5 or first.json["seed"] != second.json["seed"]
    assert g2.parent_id == g1.parent_id is None
    # The clicker's private placeholder points at the new result.
    placeholder = await h.discord.wait_for(
        lambda: (
            "Done" in (h.discord.original_response(click) or {}).get("content", "")
            and h.discord.original_response(click)
        )
    )
    assert placeholder["flags"] & FLAG_EPHEMERAL


async def _two_done(h: Harness) -> list[generations.Generation] | None:
    found = await h.edits()
    return found if len(found) == 2 and all(r.result_message_id for r in found) else None


async def test_undo_reposts_the_previous_step_at_no_cost(h: Harness) -> None:
    step1 = await first_result(h)
    step2 = await h.reply_answer(await h.reply(step1, "add snow"))
    credits = h.segmind.credits
    await h.click(step2, "undo")
    repost = await h.discord.wait_for(
        lambda: [m for m in h.channel_messages() if "undo" in str(m.get("embeds"))]
    )
    [repost] = repost
    assert image_of(h, repost) == image_of(h, step1)
    assert len(h.api_calls()) == 2 and h.segmind.credits == credits
    assert "step 1" in embed_text(repost)
    # Branch from the re-post: its parent is step 1's generation.
    step2b = await h.reply_answer(await h.reply(repost, "add rain instead"))
    g1, _, g3 = await h.edits()
    assert g3.parent_id == g1.id
    assert "step 2" in embed_text(step2b)


async def test_undo_on_a_first_step_explains_instead(h: Harness) -> None:
    step1 = await first_result(h)
    click = await h.click(step1, "undo")
    answer = await h.answer(click)
    assert answer["flags"] & FLAG_EPHEMERAL and "first edit" in answer["content"]


async def test_compare_shows_before_and_after_privately_at_no_cost(h: Harness) -> None:
    step1 = await first_result(h)
    click = await h.click(step1, "compare")
    answer = await h.discord.wait_for(
        lambda: [m for m in h.discord.followups(click) if m.get("attachments")]
    )
    [answer] = answer
    assert answer["flags"] & FLAG_EPHEMERAL
    picture = open_image(h.discord.attachment_bytes(answer["attachments"][0]))
    assert picture.width > picture.height  # two panels side by side
    assert len(h.api_calls()) == 1


async def test_edit_again_asks_for_the_next_instruction_in_a_modal(h: Harness) -> None:
    step1 = await first_result(h, "make it night")
    click = await h.click(step1, "again")
    modal = await h.discord.wait_for(lambda: h.discord.last_modal(click))
    [text_input] = [c for c in h.discord.components_of(modal) if c.get("type") == 4]
    assert text_input["placeholder"] == "make it night"
    submit = h.discord.modal_submit(
        modal["custom_id"], {text_input["custom_id"]: "add fireworks"},
        user_id=MEMBER_ID, guild_id=GUILD_ID, channel_id=CHANNEL_ID, message=step1,
    )  # fmt: skip
    await h.discord.send_interaction(submit)
    await h.discord.wait_for(lambda: _two_done(h))
    g1, g2 = await h.edits()
    assert g2.parent_id == g1.id and g2.prompt == "add fireworks"
    assert (
        h.api_calls()[1].json["input_image"].split("?")[0]
        == step1["attachments"][0]["url"].split("?")[0]
    )


async def test_buttons_work_after_a_restart_on_the_same_database(h: Harness) -> None:
    step1 = await first_result(h)
    step2 = await h.reply_answer(await h.reply(step1, "add snow"))
    await h.discord.wait_for(lambda: messages.result_message(h.bot.core.database, int(step2["id"])))
    await h.restart()
    await h.click(step2, "undo")
    await h.discord.wait_for(
        lambda: [m for m in h.channel_messages() if "undo" in str(m.get("embeds"))]
    )
    await h.click(step2, "reroll")
    await h.discord.wait_for(lambda: len(h.api_calls()) == 3)
    step3 = await h.reply_answer(await h.reply(step2, "and a moon"))
    assert "step 3" in embed_text(step3)


async def test_only_the_author_or_an_admin_can_delete(h: Harness) -> None:
    step1 = await first_result(h)
    refused = await h.answer(await h.click(step1, "delete", user_id=OTHER_MEMBER_ID))
    assert refused["flags"] & FLAG_EPHEMERAL and "Only the member" in refused["content"]
    assert int(step1["id"]) in h.discord.messages
    await h.click(step1, "delete")
    await h.discord.wait_for(lambda: int(step1["id"]) in h.discord.deleted_messages)


async def test_the_context_menu_edits_the_first_image_of_a_message(h: Harness) -> None:
    first, second = h.upload(make_image(200, 200)), h.upload(make_image(100, 100))
    target = h.discord.make_message(
        CHANNEL_ID, author_id=OTHER_MEMBER_ID, attachments=[first, second]
    )
    payload = h.discord.context_menu(
        "Edit image", target, user_id=MEMBER_ID, guild_id=GUILD_ID, channel_id=CHANNEL_ID
    )
    await h.discord.send_interaction(payload)
    modal = await h.discord.wait_for(lambda: h.discord.last_modal(payload["id"]))
    [text_input] = [c for c in h.discord.components_of(modal) if c.get("type") == 4]
    submit = h.discord.modal_submit(
        modal["custom_id"], {text_input["custom_id"]: "make it night"},
        user_id=MEMBER_ID, guild_id=GUILD_ID, channel_id=CHANNEL_ID,
    )  # fmt: skip
    await h.discord.send_interaction(submit)
    result = await h.reply_answer(target)
    assert "first of 2 images" in embed_text(result)
    assert h.api_calls()[0].json["input_image"].split("?")[0] == first["url"].split("?")[0]


async def test_the_context_menu_refuses_a_message_without_an_image(h: Harness) -> None:
    target = h.discord.make_message(CHANNEL_ID, author_id=OTHER_MEMBER_ID, content="just text")
    payload = h.discord.context_menu(
        "Edit image", target, user_id=MEMBER_ID, guild_id=GUILD_ID, channel_id=CHANNEL_ID
    )
    await h.discord.send_interaction(payload)
    answer = await h.answer(int(payload["id"]))
    assert answer["flags"] & FLAG_EPHEMERAL and "no image" in answer["content"]


async def test_history_lists_recent_edits_newest_first_in_pages(h: Harness) -> None:
    for n in range(7):
        await first_result(h, f"edit number {n}")
    page1 = await h.open_history()
    assert page1["flags"] & FLAG_EPHEMERAL
    text = page1["embeds"][0]["description"]
    assert text.index("edit number 6") < text.index("edit number 2")
    assert "edit number 1" not in text and "[result](https://discord.com/channels/" in text
    assert "Page 1 of 2" in page1["embeds"][0]["footer"]["text"]
    [older] = [c for c in h.discord.components_of(page1) if c.get("label") == "Older"]
    await h.press(older["custom_id"], page1)
    page2 = await h.discord.wait_for(
        lambda: (
            "Page 2 of 2" in str(h.discord.messages[int(page1["id"])]["embeds"])
            and h.discord.messages[int(page1["id"])]
        )
    )
    assert "edit number 0" in page2["embeds"][0]["description"]


async def test_a_result_after_the_token_expired_is_posted_with_a_ping(h: Harness) -> None:
    h.segmind.delay = 0.5
    interaction = await h.edit("slow one")
    await h.discord.wait_for(lambda: h.segmind.in_flight == 1)
    # Sixteen minutes pass while the API works: the interaction token is dead.
    h.discord.advance(16 * 60)
    h.bot.clock = lambda: time.time() + 16 * 60
    result = await h.answer(interaction)
    assert result["content"] == f"<@{MEMBER_ID}> your edit is ready."
    assert [int(u) for u in result["allowed_mentions"]["users"]] == [MEMBER_ID]
    assert result["allowed_mentions"]["parse"] == []
    assert result["attachments"]


async def test_a_result_discord_would_not_take_is_kept_and_history_delivers_it(
    h: Harness,
) -> None:
    h.refuse_uploads()
    told = await h.answer(await h.edit("upload fails", h.upload(make_image(300, 200))))
    assert told["flags"] & FLAG_EPHEMERAL and "/history" in told["content"]
    [row] = await h.edits()
    assert row.status == "succeeded" and row.result_message_id is None
    kept = row.result_path
    assert kept and open_image(open(kept, "rb").read()).size == (300, 200)  # noqa: SIM115, ASYNC230

    page = await h.open_history()
    [deliver] = deliver_buttons(page)
    assert deliver["label"] == f"Deliver #{row.id}"
    await h.wait_followup(await h.press(deliver["custom_id"], page), "Delivered")
    [row] = await h.edits()
    delivered = h.discord.messages[row.result_message_id]
    assert (
        delivered["attachments"] and delivered["content"] == f"<@{MEMBER_ID}> your edit is ready."
    )
    assert row.result_path is None
    assert len(h.api_calls()) == 1  # delivered from disk, not edited again


async def test_a_server_can_keep_iteration_to_each_results_author(h: Harness) -> None:

    step1 = await first_result(h)
    answer = await h.admin("iteration", author_only=True)
    assert "only its author" in answer["content"]
    refused = await h.reply_answer(await h.reply(step1, "mine now", user_id=OTHER_MEMBER_ID))
    assert "only the member who made a result" in refused["content"]
    clicked = await h.answer(await h.click(step1, "reroll", user_id=OTHER_MEMBER_ID))
    assert clicked["flags"] & FLAG_EPHEMERAL and "only the member" in clicked["content"]
    assert len(h.api_calls()) == 1
    # The author still can; and the change is audited.
    assert (await h.reply_answer(await h.reply(step1, "still mine")))["attachments"]
    [entry] = await h.bot.core.admin.audit_log(GUILD_ID, limit=10)
    assert (entry.action, entry.before, entry.after) == ("iteration", "default", "only the author")


async def context_menu_edit(h: Harness, target: dict, text: str, *, user_id: int) -> int:
    """Right-click > Apps > Edit image on `target`, then the modal; returns the submit's id
    (or the menu's own id when it answered without a modal)."""
    payload = h.discord.context_menu(
        "Edit image", target, user_id=user_id, guild_id=GUILD_ID, channel_id=CHANNEL_ID
    )
    await h.discord.send_interaction(payload)
    modal = await h.discord.wait_for(
        lambda: h.discord.last_modal(payload["id"]) or h.discord.callbacks.get(int(payload["id"]))
    )
    if "custom_id" not in modal:
        return int(payload["id"])
    [text_input] = [c for c in h.discord.components_of(modal) if c.get("type") == 4]
    submit = h.discord.modal_submit(
        modal["custom_id"], {text_input["custom_id"]: text},
        user_id=user_id, guild_id=GUILD_ID, channel_id=CHANNEL_ID,
    )  # fmt: skip
    await h.discord.send_interaction(submit)
    return int(submit["id"])


def result_link_embed(result: dict) -> dict:
    """What Discord shows for a message that pastes a link to a result's image."""
    [attachment] = result["attachments"]
    return {
        "type": "image",
        "url": attachment["url"],
        "thumbnail": {
            "url": attachment["url"],
            "proxy_url": attachment["proxy_url"],
            "width": attachment["width"],
            "height": attachment["height"],
        },
    }


def link_post(h: Harness, result: dict, content: str = "") -> dict:
    """Another member's message showing `result`'s image by its link (as Discord embeds
    it), mentioning the bot when it says something."""
    mentions = [h.discord.bot_user_id] if content else []
    return h.discord.make_message(
        CHANNEL_ID, author_id=OTHER_MEMBER_ID, content=content, mentions=mentions,
        embeds=[result_link_embed(result)],
    )  # fmt: skip


@pytest.mark.settings(iterate_author_only=True)
async def test_the_context_menu_on_someone_elses_result_follows_the_iteration_rule(
    h: Harness,
) -> None:
    step1 = await first_result(h)
    refused = await h.answer(await context_menu_edit(h, step1, "mine now", user_id=OTHER_MEMBER_ID))
    assert refused["flags"] & FLAG_EPHEMERAL
    assert "only the member who made a result" in refused["content"]
    assert len(h.api_calls()) == 1
    # Its author continues the chain from the menu: the next step of the same chain.
    await context_menu_edit(h, step1, "add snow", user_id=MEMBER_ID)
    step2 = await h.reply_answer(step1)
    g1, g2 = await h.edits()
    assert g2.parent_id == g1.id and "step 2" in embed_text(step2)


@pytest.mark.settings(iterate_author_only=True)
async def test_a_mention_with_a_link_to_someone_elses_result_follows_the_iteration_rule(
    h: Harness,
) -> None:
    step1 = await first_result(h)
    url = step1["attachments"][0]["url"]
    message = link_post(h, step1, f"<@{h.discord.bot_user_id}> mine now {url}")
    await h.discord.dispatch("MESSAGE_CREATE", message)
    refused = await h.reply_answer(message)
    assert "only the member who made a result" in refused["content"]
    assert len(h.api_calls()) == 1


@pytest.mark.settings(iterate_author_only=True)
async def test_a_mention_replying_to_someone_elses_result_follows_the_iteration_rule(
    h: Harness,
) -> None:
    step1 = await first_result(h)
    photo = link_post(h, step1)
    # A mention in reply to the result itself, and to a message that shows its link (by
    # two members: one member refused twice in a row gets a reaction the second time).
    for target, user_id in ((step1, OTHER_MEMBER_ID), (photo, ADMIN_ID)):
        ask = await h.reply(target, f"<@{h.discord.bot_user_id}> mine now", user_id=user_id)
        refused = await h.reply_answer(ask)
        assert "only the member who made a result" in refused["content"]
    assert len(h.api_calls()) == 1


async def test_a_failure_after_the_token_expired_is_told_in_the_channel(h: Harness) -> None:
    h.segmind.delay = 0.5
    h.segmind.fail_next(500)
    await h.edit("slow and failing")
    await h.discord.wait_for(lambda: h.segmind.in_flight == 1)
    h.discord.advance(16 * 60)
    h.bot.clock = lambda: time.time() + 16 * 60
    told = await h.discord.wait_for(
        lambda: [m for m in h.channel_messages() if "try again" in (m.get("content") or "")]
    )
    [message] = told
    assert message["content"].startswith(f"<@{MEMBER_ID}> ")
    assert [int(u) for u in message["allowed_mentions"]["users"]] == [MEMBER_ID]


async def test_a_result_paid_for_but_not_posted_before_a_crash_is_delivered_at_start_up(
    h: Harness,
) -> None:
    h.refuse_uploads()
    await h.answer(await h.edit("crash before posting"))
    await forge_crash_during_upload(h.bot.core.database)
    await h.restart()
    delivered = await h.discord.wait_for(
        lambda: [
            m for m in h.channel_messages()
            if m.get("content") == f"<@{MEMBER_ID}> your edit is ready." and m.get("attachments")
        ]
    )  # fmt: skip
    assert len(delivered) == 1
    await h.wait_job_ended("done")
    [row] = await h.edits()
    assert row.result_message_id == int(delivered[0]["id"]) and row.result_path is None
    [charge] = await h.charges()
    assert charge.state == "committed"
    assert len(h.api_calls()) == 1
