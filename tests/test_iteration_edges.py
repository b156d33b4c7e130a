"""The iteration rule (`/admin iteration`, ITERATE_AUTHOR_ONLY) is asked when an edit is
actually asked for, not only when its box was opened."""

from __future__ import annotations

from bot.images import InputImage
from tests.harness import Harness
from tests.test_chains import first_result
from tests.world import CHANNEL_ID, GUILD_ID, OTHER_MEMBER_ID


async def test_edit_again_asks_the_iteration_rule_again_when_its_box_is_sent(
    harness: Harness,
) -> None:
    h = harness
    step1 = await first_result(h)
    click = await h.click(step1, "again", user_id=OTHER_MEMBER_ID)  # anyone may, for now
    modal = await h.discord.wait_for(lambda: h.discord.last_modal(click))
    [text_input] = [c for c in h.discord.components_of(modal) if c.get("type") == 4]

    # While the box is open, the server keeps iteration to each result's author.
    await h.admin("iteration", author_only=True)
    submit = h.discord.modal_submit(
        modal["custom_id"], {text_input["custom_id"]: "mine now"},
        user_id=OTHER_MEMBER_ID, guild_id=GUILD_ID, channel_id=CHANNEL_ID, message=step1,
    )  # fmt: skip
    await h.discord.send_interaction(submit)

    refused = await h.answer(int(submit["id"]))
    assert "only the member who made a result" in refused["content"]
    assert len(h.api_calls()) == 1  # nothing sent, nothing charged


def shown(result: dict) -> InputImage:
    """The result's picture as a member in any server can point at it (a pasted link)."""
    [attachment] = result["attachments"]
    return InputImage(
        url=attachment["url"],
        filename=attachment["filename"],
        content_type=attachment.get("content_type"),
        size=attachment["size"],
        width=attachment.get("width"),
        height=attachment.get("height"),
        attachment_id=int(attachment["id"]),
    )


async def test_a_result_pasted_into_another_server_starts_a_new_chain_there(
    harness: Harness,
) -> None:
    """A public bot's servers are strangers to each other: a link to one server's result
    is a plain picture elsewhere, so its chain (earlier steps, Undo) stays in its server."""
    h = harness
    step1 = await first_result(h)
    chains = h.bot.core.chains
    here = await chains.continued_from(shown(step1), OTHER_MEMBER_ID, GUILD_ID)
    assert here is not None and here.guild_id == GUILD_ID
    assert await chains.continued_from(shown(step1), OTHER_MEMBER_ID, GUILD_ID + 1) is None
    assert await chains.continued_from(shown(step1), OTHER_MEMBER_ID, None) is None
