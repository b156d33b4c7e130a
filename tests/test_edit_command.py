"""`/edit` end to end: discord.py's own code against the Discord and Segmind stand-ins."""

from __future__ import annotations

import base64
import logging

import pytest

from bot.db import generations
from tests.fake_discord import FLAG_EPHEMERAL
from tests.harness import Harness
from tests.helpers import make_animation, make_image, make_mpo, make_noise_image, open_image
from tests.world import API_KEY, BOT_TOKEN, CHANNEL_ID, GUILD_ID, MEMBER_ID

MODES = [
    pytest.param(mode, marks=pytest.mark.settings(segmind_input_mode=mode), id=mode)
    for mode in ("url", "base64")
]


async def test_edit_replies_with_the_edited_image_and_a_compact_embed(h: Harness) -> None:
    source = make_image(320, 240)
    interaction = await h.edit("make it night", h.upload(source), seed=1234, steps=28)
    answer = await h.answer(interaction)

    assert not answer["flags"] & FLAG_EPHEMERAL
    [attachment] = answer["attachments"]
    result = open_image(h.discord.attachment_bytes(attachment))
    original = open_image(source).convert("RGB")
    # The stand-in inverts colours: the uploaded file is the API's image, not the input.
    assert result.size == original.size
    assert result.convert("RGB").getpixel((300, 200)) == tuple(
        255 - c for c in original.getpixel((300, 200))
    )
    [embed] = answer["embeds"]
    assert "make it night" in embed["description"]
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields["Seed"] == "`1234`"
    assert "steps 28" in fields["Options"]
    assert fields["Cost"].endswith("credits")
    assert embed["image"]["url"] == attachment["url"]  # the embed shows the uploaded file

    [call] = h.api_calls()
    assert call.json["prompt"] == "make it night"
    assert call.json["seed"] == 1234
    assert call.json["num_inference_steps"] == 28
    assert call.json["input_image"].startswith(h.discord.cdn_base)
    assert call.headers["x-api-key"] == API_KEY

    [row] = await h.edits()
    assert row.status == "succeeded"
    assert (row.user_id, row.guild_id, row.channel_id) == (MEMBER_ID, GUILD_ID, CHANNEL_ID)
    assert row.seed == 1234 and row.steps == 28 and row.guidance == 7.0
    assert row.result_message_id == int(answer["id"])
    assert row.result_attachment_id == int(attachment["id"])
    assert row.remaining_credits == pytest.approx(h.segmind.credits)
    assert row.api_time_s is not None and row.finished_at is not None


async def test_the_first_answer_is_a_public_defer_within_three_seconds(h: Harness) -> None:
    h.segmind.delay = 1.0
    interaction = await h.edit("add a hat")
    await h.answer(interaction)
    [first, *_] = h.discord.callbacks[interaction]
    assert first["type"] == 5
    assert not first.get("data", {}).get("flags", 0) & FLAG_EPHEMERAL
    assert first["after"] < 3.0


async def test_a_seed_is_chosen_and_shown_when_omitted(h: Harness) -> None:
    answer = await h.answer(await h.edit("add snow"))
    [call] = h.api_calls()
    seed = call.json["seed"]
    assert isinstance(seed, int) and seed >= 0
    fields = {f["name"]: f["value"] for f in answer["embeds"][0]["fields"]}
    assert fields["Seed"] == f"`{seed}`"


async def test_cost_is_the_drop_in_remaining_credits_once_a_reading_exists(h: Harness) -> None:
    await h.answer(await h.edit("first"))
    answer = await h.answer(await h.edit("second"))
    rows = await h.edits()
    assert rows[0].cost_source == "estimate"  # no earlier balance to compare with
    assert rows[1].cost_source == "balance_drop"
    assert rows[1].cost == pytest.approx(h.segmind.cost)
    fields = {f["name"]: f["value"] for f in answer["embeds"][0]["fields"]}
    assert fields["Cost"] == "0.04 credits"


async def test_mentions_are_disabled_on_everything_the_bot_sends(h: Harness) -> None:
    answer = await h.answer(await h.edit("@everyone look <@123> at this"))
    assert answer["allowed_mentions"] == {"parse": []} or answer["allowed_mentions"]["parse"] == []
    assert "@\u200beveryone" in answer["embeds"][0]["description"]
    for request in h.discord.requests:
        if request.method in ("POST", "PATCH") and isinstance(request.json, dict):
            mentions = request.json.get("allowed_mentions") or request.json.get("data", {}).get(
                "allowed_mentions"
            )
            if mentions is not None:
                assert mentions.get("parse") == [], request.path


@pytest.mark.parametrize(
    ("prompt", "upload", "options", "expected"),
    [
        ("   ", {}, {}, "prompt is empty"),
        ("x" * 1001, {}, {}, "limit is 1,000"),
        ("ok", {"filename": "a.txt", "content_type": "text/plain"}, {}, "PNG, GIF, WebP, HEIC"),
        ("ok", {"filename": "big.png", "size": 21 * 1024 * 1024}, {}, "limit is 20 MB"),
        ("ok", {"data": make_image(40, 40)}, {}, "at least 64 px"),
        ("ok", {"width": 9000, "height": 100}, {}, "8192 px or less"),
        ("ok", {"content_type": "image/png", "width": None, "height": None,
                "data": b"not an image"}, {}, "could not read that file"),
        ("ok", {}, {"guidance": 11.0}, "`guidance` must be between 0 and 10"),
        ("ok", {}, {"steps": 3}, "`steps` must be between 4 and 50"),
        ("ok", {}, {"quality": 101}, "`quality` must be between 0 and 100"),
        ("ok", {}, {"aspect_ratio": "7:3"}, "`aspect_ratio` must be one of"),
        ("ok", {}, {"output_format": "bmp"}, "`output_format` must be one of"),
    ],
)  # fmt: skip
async def test_bad_input_gets_a_private_answer_and_costs_nothing(
    h: Harness, prompt: str, upload: dict, options: dict, expected: str
) -> None:
    credits_before = h.segmind.credits
    interaction = await h.edit(prompt, h.upload(**upload), **options)
    answer = await h.answer(interaction)
    assert answer["flags"] & FLAG_EPHEMERAL
    assert expected in answer["content"]
    assert h.api_calls() == []
    assert h.segmind.credits == credits_before
    assert await h.edits() == []
    # The bot is still answering afterwards.
    assert (await h.answer(await h.edit("fine now")))["attachments"]


@pytest.mark.parametrize(
    ("fault", "expected", "calls"),
    [
        ({"status": 401}, "can't edit images right now; the admins have been told", 1),
        (
            {"status": 406, "body": {"error": "Insufficient credits"}},
            "can't edit images right now; the admins have been told",
            1,
        ),
        ({"status": 404}, "unknown model", 1),
        ({"status": 422, "body": {"error": "prompt is not allowed"}}, "prompt is not allowed", 1),
        ({"status": 429, "headers": {"Retry-After": "0"}, "times": 2}, "busy", 2),
        ({"status": 503, "headers": {"Retry-After": "0"}, "times": 2}, "busy", 2),
        ({"status": 500, "times": 2}, "failed on this edit. Please try again", 1),
    ],
)
async def test_api_faults_are_explained_and_leave_no_pending_row(
    h: Harness, fault: dict, expected: str, calls: int
) -> None:
    h.segmind.fail_next(**fault)
    answer = await h.answer(await h.edit("make it pop"))
    assert expected in answer["content"]
    assert "not charged" in answer["content"]
    assert answer["flags"] & FLAG_EPHEMERAL
    assert len(h.api_calls()) == calls
    [row] = await h.edits()
    assert row.status == "failed" and row.failure_reason
    assert await generations.count_by_status(h.bot.core.database) == {"failed": 1}


async def test_a_retried_server_error_then_success_delivers_the_image(h: Harness) -> None:
    h.segmind.fail_next(503, headers={"Retry-After": "0"})
    answer = await h.answer(await h.edit("make it pop"))
    assert answer["attachments"]
    assert len(h.api_calls()) == 2


@pytest.mark.settings(segmind_timeout_s=0.5)
async def test_a_timeout_is_not_retried_and_the_member_is_told(h: Harness) -> None:
    h.segmind.delay_next(2.0)
    answer = await h.answer(await h.edit("slow one"))
    assert "took too long" in answer["content"] and "not charged" in answer["content"]
    assert len(h.api_calls()) == 1
    [row] = await h.edits()
    assert row.status == "failed" and "Timeout" in row.failure_reason


async def test_a_non_image_answer_is_not_posted(h: Harness) -> None:
    h.segmind.not_image_next()
    answer = await h.answer(await h.edit("garbage please"))
    assert "broken image" in answer["content"]
    assert not answer["attachments"]


async def test_after_a_rejected_key_no_more_requests_are_sent(h: Harness) -> None:
    h.segmind.fail_next(401)
    await h.answer(await h.edit("one"))
    answer = await h.answer(await h.edit("two"))
    assert "admins have been told" in answer["content"]
    assert answer["flags"] & FLAG_EPHEMERAL
    assert len(h.api_calls()) == 1  # the second edit was refused without a call
    assert [r.status for r in await h.edits()] == ["failed"]


async def test_the_key_and_token_never_reach_logs_or_messages(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    h.segmind.fail_next(401, body={"error": f"bad key {API_KEY}"})
    await h.answer(await h.edit("one"))
    h.segmind.fail_next(422, body={"error": f"echo {API_KEY}"})
    h.bot.core.health.resume()
    await h.answer(await h.edit("two"))
    await h.answer(await h.edit("three"))
    assert API_KEY not in caplog.text and BOT_TOKEN not in caplog.text
    for message in h.discord.messages.values():
        assert API_KEY not in str(message)
    rows = await h.edits()
    assert API_KEY not in str(rows)


@pytest.mark.settings(segmind_input_mode="base64")
async def test_base64_mode_downloads_from_the_cdn_and_sends_clean_bytes(h: Harness) -> None:
    answer = await h.answer(await h.edit("make it night", h.upload(make_image(300, 200))))
    assert answer["attachments"]
    [call] = h.api_calls()
    assert not call.json["input_image"].startswith("http")
    assert h.discord.cdn_requests, "the bot should have downloaded the upload itself"


@pytest.mark.settings(segmind_input_mode="base64")
async def test_base64_mode_refuses_a_file_that_is_not_an_image(h: Harness) -> None:
    upload = h.upload(b"\x89PNG\r\n\x1a\n" + b"\0" * 500, width=300, height=300)
    answer = await h.answer(await h.edit("x", upload))
    assert answer["flags"] & FLAG_EPHEMERAL
    assert "not a readable image" in answer["content"]
    assert h.api_calls() == []
    assert await h.edits() == []


async def test_a_result_over_the_upload_limit_is_reencoded_and_says_so(h: Harness) -> None:
    h.discord.guild_upload_limits[GUILD_ID] = 40 * 1024
    noisy = make_noise_image(900, 900)
    answer = await h.answer(await h.edit("x", h.upload(noisy)))
    [attachment] = answer["attachments"]
    assert attachment["filename"].endswith(".jpg")
    assert len(h.discord.attachment_bytes(attachment)) <= 40 * 1024
    assert "re-encoded" in answer["embeds"][0]["footer"]["text"]


# -- every picture a phone or camera makes ---------------------------------------------------


def footer_of(answer: dict) -> str:
    return answer["embeds"][0]["footer"]["text"]


def assert_inverted(h: Harness, answer: dict, source: bytes) -> None:
    """The posted picture is the API's edit of the member's picture (the stand-in inverts)."""
    [attachment] = answer["attachments"]
    result = open_image(h.discord.attachment_bytes(attachment)).convert("RGB")
    original = open_image(source).convert("RGB")
    assert result.size == original.size
    for xy in ((10, 10), (300, 200)):
        want = tuple(255 - c for c in original.getpixel(xy))
        assert all(abs(a - b) <= 12 for a, b in zip(result.getpixel(xy), want, strict=True))


CONVERTED_UPLOADS = [
    pytest.param("HEIF", "IMG_0001.HEIC", "image/heic", "HEIC", id="heic"),
    pytest.param("AVIF", "photo.avif", "image/avif", "AVIF", id="avif"),
    pytest.param("TIFF", "scan.tiff", "image/tiff", "TIFF", id="tiff"),
    pytest.param("BMP", "old.bmp", "image/bmp", "BMP", id="bmp"),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("pil_format", "filename", "content_type", "label"), CONVERTED_UPLOADS)
async def test_a_picture_the_api_cannot_take_is_converted_and_edited(
    h: Harness, mode: str, pil_format: str, filename: str, content_type: str, label: str
) -> None:
    source = make_image(320, 240, pil_format)
    answer = await h.answer(await h.edit("make it night", h.upload(source, filename, content_type)))

    assert not answer["flags"] & FLAG_EPHEMERAL
    assert_inverted(h, answer, source)
    assert f"converted from {label}" in footer_of(answer)
    [call] = h.api_calls()
    sent = base64.b64decode(call.json["input_image"], validate=True)  # never the CDN URL
    assert open_image(sent).format == "JPEG"
    [row] = await h.edits()
    assert row.status == "succeeded" and row.input_mode == "base64"


@pytest.mark.parametrize("mode", MODES)
async def test_an_mpo_named_photo_jpg_is_edited_as_a_jpeg(h: Harness, mode: str) -> None:
    source = make_mpo(320, 240)
    answer = await h.answer(
        await h.edit("make it night", h.upload(source, "photo.jpg", "image/jpeg"))
    )

    assert not answer["flags"] & FLAG_EPHEMERAL
    assert_inverted(h, answer, source)
    assert "converted" not in footer_of(answer)
    [call] = h.api_calls()
    if mode == "url":
        assert call.json["input_image"].startswith(h.discord.cdn_base)
    else:
        assert open_image(base64.b64decode(call.json["input_image"])).format == "JPEG"


async def test_an_animated_png_typed_image_apng_is_edited(h: Harness) -> None:
    source = make_animation(3, size=(320, 240))
    answer = await h.answer(await h.edit("make it night", h.upload(source, "a.png", "image/apng")))
    assert answer["attachments"] and not answer["flags"] & FLAG_EPHEMERAL
    [call] = h.api_calls()
    assert call.json["input_image"].startswith(h.discord.cdn_base)  # a PNG the API can fetch


@pytest.mark.parametrize(
    "upload",
    [
        {"filename": "IMG_0001.HEIC", "content_type": "image/heic", "width": None, "height": None},
        {"filename": "photo.jpg", "content_type": "image/jpeg"},
    ],
    ids=["discord-gave-no-size", "named-as-a-jpeg"],
)
async def test_the_bytes_decide_how_a_heic_is_sent(h: Harness, upload: dict) -> None:
    source = make_image(320, 240, "HEIF")
    attachment = h.upload(source, upload.pop("filename"), upload.pop("content_type")) | upload
    answer = await h.answer(await h.edit("make it night", attachment))
    assert_inverted(h, answer, source)
    assert "converted from HEIC" in footer_of(answer)
    [call] = h.api_calls()
    assert not call.json["input_image"].startswith("http")


async def test_mentioning_the_bot_with_a_heic_edits_it(h: Harness) -> None:
    source = make_image(320, 240, "HEIF")
    message = h.discord.make_message(
        CHANNEL_ID,
        author_id=MEMBER_ID,
        content=f"<@{h.discord.bot_user_id}> make it night",
        attachments=[h.upload(source, "IMG_0002.HEIC", "image/heic")],
        mentions=[h.discord.bot_user_id],
    )
    await h.discord.dispatch("MESSAGE_CREATE", message)
    result = await h.reply_answer(message)
    assert_inverted(h, result, source)
    assert "converted from HEIC" in footer_of(result)


async def test_an_undo_repost_of_a_converted_heic_still_says_so(h: Harness) -> None:
    """The re-post is rebuilt from the database row, so the row must remember the input's
    conversion (and the result's re-encoding) as the first post said them."""
    source = make_image(320, 240, "HEIF")
    step1 = await h.answer(await h.edit("make it night", h.upload(source, "a.heic", "image/heic")))
    assert "converted from HEIC" in footer_of(step1)
    step2 = await h.reply_answer(await h.reply(step1, "add snow"))
    assert "converted from" not in footer_of(step2)  # its input was step 1's PNG result
    await h.click(step2, "undo")
    [repost] = await h.discord.wait_for(
        lambda: [m for m in h.channel_messages() if "undo" in str(m.get("embeds"))]
    )
    assert "converted from HEIC" in footer_of(repost)
