"""Hostile input and hostile answers: each is refused cleanly, costs nothing, and the bot
keeps working. Inputs are tried in both ways of handing the image to the API."""

from __future__ import annotations

import functools
from typing import Any

import pytest

from tests.fake_discord import FLAG_EPHEMERAL
from tests.harness import Harness
from tests.helpers import (
    LocalServer,
    make_animation,
    make_heic_bomb,
    make_image,
    make_noise_image,
    make_png_bomb,
)
from tests.world import GUILD_ID, MEMBER_ID, OTHER_MEMBER_ID

MODES = [
    pytest.param(mode, marks=pytest.mark.settings(segmind_input_mode=mode), id=mode)
    for mode in ("url", "base64")
]
ROLE_ID = 4242_0001


@functools.cache
def many_frames_gif() -> bytes:
    """1,500 tiny alternating frames: about 200 KB on disk."""
    return make_animation(1500, size=(64, 64), fmt="GIF")


@functools.cache
def noisy_heic() -> bytes:
    """A HEIC whose picture data is most of the file, so half of it is a cut picture."""
    return make_noise_image(320, 240, "HEIF")


HEIC = {"filename": "IMG_0001.HEIC", "content_type": "image/heic"}


async def assert_refused_at_no_cost(
    h: Harness, interaction: int, *expected: str, credits: float
) -> dict[str, Any]:
    """A private refusal naming the problem; no API call, no row, no money moved."""
    answer = await h.answer(interaction)
    assert answer["flags"] & FLAG_EPHEMERAL
    assert any(text in answer["content"] for text in expected), answer["content"]
    assert not answer.get("attachments")
    assert h.api_calls() == []
    assert h.segmind.credits == credits
    assert await h.edits() == []
    assert await h.server_charges() == []
    return answer


async def assert_still_edits(h: Harness) -> None:
    answer = await h.answer(await h.edit("fine now", h.upload(make_image(200, 160))))
    assert answer["attachments"] and not answer["flags"] & FLAG_EPHEMERAL


# -- images that are not what they claim ----------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", ["other-port", "other-host", "userinfo"])
async def test_an_attachment_on_another_host_is_never_fetched(
    h: Harness, local_server: LocalServer, mode: str, kind: str
) -> None:
    local_server.serve_bytes("/evil.png", make_image(300, 200))
    url = {
        "other-port": local_server.url("/evil.png"),
        "other-host": f"http://localhost:{local_server.port}/evil.png",
        "userinfo": f"http://{h.discord.cdn_host}@127.0.0.1:{local_server.port}/evil.png",
    }[kind]
    upload = h.upload(make_image(300, 200)) | {"url": url, "proxy_url": url}
    credits = h.segmind.credits

    await assert_refused_at_no_cost(
        h, await h.edit("steal", upload), "uploaded to Discord", credits=credits
    )

    assert local_server.hits == []  # neither the bot nor the API went there
    await assert_still_edits(h)


# `fetched`: whether the lie can only be caught by downloading the bytes (Discord's own
# description of the file already gives the others away).
HOSTILE_IMAGES = [
    ("bomb, dims hidden", {"data": make_png_bomb(), "width": 1024, "height": 1024},
     ("not a readable image",), True),
    ("bomb, dims shown", {"data": make_png_bomb(), "width": 20000, "height": 20000},
     ("8192 px or less",), False),
    ("truncated png", {"data": (png := make_image(300, 200))[: len(png) // 2]},
     ("not a readable image", "damaged or truncated"), True),
    ("truncated jpeg", {"data": (jpeg := make_image(300, 200, "JPEG"))[: len(jpeg) // 2],
                        "filename": "photo.jpg", "content_type": "image/jpeg"},
     ("not a readable image", "damaged or truncated"), True),
    ("text as png", {"data": b"just some text, honestly\n" * 40, "width": 512, "height": 512},
     ("not a readable image",), True),
    ("1,500 frames", {"data": many_frames_gif(), "filename": "a.gif", "content_type": "image/gif"},
     ("1,500 frames; I accept up to 1,000",), True),
    ("1x50000 said", {"width": 1, "height": 50000}, ("at least 64 px",), False),
    ("64x8193 said", {"width": 64, "height": 8193}, ("8192 px or less",), False),
    ("1x50000 real", {"data": make_image(1, 50000), "width": 512, "height": 512},
     ("at least 64 px",), True),
    ("64x8193 real", {"data": make_image(64, 8193), "width": 64, "height": 64},
     ("8192 px or less",), True),
    ("heic bomb, dims hidden", {"data": make_heic_bomb(), "width": 1024, "height": 1024, **HEIC},
     ("not a readable image",), True),
    ("heic bomb, no dims", {"data": make_heic_bomb(), "width": None, "height": None, **HEIC},
     ("not a readable image",), True),
    ("heic bomb, dims shown", {"data": make_heic_bomb(), "width": 20000, "height": 20000, **HEIC},
     ("8192 px or less",), False),
    ("truncated heic", {"data": noisy_heic()[: len(noisy_heic()) // 2], **HEIC},
     ("not a readable image", "damaged or truncated"), True),
    ("heic cut at the tail", {"data": noisy_heic()[:-64], **HEIC},
     ("not a readable image", "damaged or truncated"), True),
    ("ppm named .heic", {"data": make_image(300, 200, "PPM"), **HEIC},
     ("not a readable image",), True),
    ("ico named .tiff", {"data": make_image(128, 128, "ICO"), "filename": "scan.tiff",
                         "content_type": "image/tiff"}, ("not a readable image",), True),
    ("text named .avif", {"data": b"just some text, honestly\n" * 40, "filename": "a.avif",
                          "content_type": "image/avif"}, ("not a readable image",), True),
]  # fmt: skip


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("upload", "expected", "fetched"),
    [pytest.param(*case[1:], id=case[0]) for case in HOSTILE_IMAGES],
)
async def test_a_hostile_image_is_refused_before_anything_is_spent(
    h: Harness, mode: str, upload: dict[str, Any], expected: tuple[str, ...], fetched: bool
) -> None:
    credits = h.segmind.credits
    interaction = await h.edit("make it night", h.upload(**upload))
    await assert_refused_at_no_cost(h, interaction, *expected, credits=credits)
    assert bool(h.discord.cdn_requests) == fetched
    await assert_still_edits(h)


# -- prompts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("x" * 10_000, "The prompt is 10,000 characters; the limit is 1,000."),
        ("\x00\x01\x07\x1b\x7f\r\n\t\u200b\u202e\u2066 \x1f", "the prompt is empty"),
    ],
    ids=["10k chars", "control chars only"],
)
async def test_an_unusable_prompt_is_refused_at_no_cost(
    h: Harness, prompt: str, expected: str
) -> None:
    credits = h.segmind.credits
    await assert_refused_at_no_cost(h, await h.edit(prompt), expected, credits=credits)
    await assert_still_edits(h)


async def test_a_prompt_full_of_mentions_is_edited_but_pings_nobody(h: Harness) -> None:
    prompt = f"@everyone @here <@{OTHER_MEMBER_ID}> <@!{OTHER_MEMBER_ID}> <@&{ROLE_ID}> " * 10
    answer = await h.answer(await h.edit(prompt + "make it night"))

    assert answer["attachments"]
    assert h.api_calls()[0].json["prompt"].startswith("@everyone")  # the API gets the text as is
    bot_id = str(h.discord.bot_user_id)
    sent = [m for m in h.discord.messages.values() if m["author"]["id"] == bot_id]
    assert sent
    for message in sent:
        assert message["mentions"] == [] and message["mention_roles"] == []
        assert not message["mention_everyone"]
        assert message["allowed_mentions"] is None or message["allowed_mentions"]["parse"] == []
    for request in h.discord.requests:
        body = request.json if isinstance(request.json, dict) else {}
        mentions = body.get("allowed_mentions") or (body.get("data") or {}).get("allowed_mentions")
        if mentions is not None:
            assert mentions["parse"] == [] and not mentions.get("roles"), request.path
            assert not mentions.get("users"), request.path


# -- hostile answers from the API ----------------------------------------------------------


async def assert_failed_and_released(h: Harness, answer: dict[str, Any], expected: str) -> None:
    assert answer["flags"] & FLAG_EPHEMERAL and not answer.get("attachments")
    assert expected in answer["content"] and "not charged" in answer["content"]
    [gen] = await h.edits()
    assert gen.status == "failed" and gen.failure_reason
    assert [c.state for c in await h.server_charges()] == ["released"]
    quota = await h.bot.core.ledger.status(GUILD_ID, MEMBER_ID, ())
    assert quota.used == quota.held == 0  # the member's allowance is untouched


async def test_a_huge_answer_is_refused_as_a_broken_image(h: Harness) -> None:
    api = h.bot.core.api
    limit, api.max_response_bytes = api.max_response_bytes, 64  # any real image is "huge" now
    answer = await h.answer(await h.edit("make it night"))
    api.max_response_bytes = limit
    await assert_failed_and_released(h, answer, "broken image")
    assert len(h.api_calls()) == 1
    await assert_still_edits(h)


async def test_a_200_that_is_not_an_image_is_not_posted(h: Harness) -> None:
    h.segmind.not_image_next()
    answer = await h.answer(await h.edit("make it night"))
    await assert_failed_and_released(h, answer, "broken image")
    await assert_still_edits(h)


async def test_garbage_credit_headers_do_not_stop_the_result(h: Harness) -> None:
    h.segmind.header_mode = "garbage"
    answer = await h.answer(await h.edit("make it night"))
    assert answer["attachments"]
    [gen] = await h.edits()
    assert gen.status == "succeeded" and gen.remaining_credits is None
    assert gen.cost is not None and gen.cost >= 0
    [charge] = await h.server_charges()
    assert charge.state == "committed"
    h.segmind.header_mode = "normal"
    await assert_still_edits(h)


@pytest.mark.settings(segmind_timeout_s=0.5)
async def test_an_api_that_stalls_past_the_timeout_is_given_up_on(h: Harness) -> None:
    h.segmind.delay_next(2.0)
    answer = await h.answer(await h.edit("make it night"))
    await assert_failed_and_released(h, answer, "took too long")
    assert len(h.api_calls()) == 1  # a call whose fate is unknown is never re-sent
    await assert_still_edits(h)
