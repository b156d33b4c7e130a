"""What a member can make the bot decode is bounded: a megapixel cap refused at no cost,
Compare one at a time per member and in a lane of its own, image work in a pool with a
byte budget, and Compare drawn from thumbnails."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from bot import decoding
from bot.chains import MSG_COMPARING
from bot.imagework import ImageWork
from tests.clock import until
from tests.fake_discord import FLAG_EPHEMERAL
from tests.harness import Harness
from tests.helpers import make_image, make_png_bomb, open_image
from tests.world import MEMBER_ID, OTHER_MEMBER_ID

MODES = [
    pytest.param(mode, marks=pytest.mark.settings(segmind_input_mode=mode), id=mode)
    for mode in ("url", "base64")
]


@pytest.fixture
def h(harness: Harness) -> Harness:
    return harness


async def assert_refused_at_no_cost(h: Harness, interaction: int, credits: float) -> str:
    answer = await h.answer(interaction)
    assert answer["flags"] & FLAG_EPHEMERAL and not answer.get("attachments")
    assert [r for r in h.segmind.requests if r.method == "POST"] == []
    assert h.segmind.credits == credits
    for table in ("generations", "charges"):
        assert await h.bot.core.database.fetchall(f"SELECT * FROM {table}") == []  # noqa: S608
    return str(answer["content"])


# -- the megapixel cap ---------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_a_picture_discord_measures_over_the_cap_is_refused_unfetched(
    h: Harness, mode: str
) -> None:
    credits = h.segmind.credits
    upload = h.upload(make_image(300, 200), width=8000, height=6000)  # 48 MP said
    text = await assert_refused_at_no_cost(h, await h.edit("make it night", upload), credits)
    assert "8000x6000" in text and "40 megapixels" in text and "Nothing was charged" in text
    assert h.discord.cdn_requests == []


@pytest.mark.parametrize("mode", MODES)
async def test_a_picture_over_the_cap_that_discord_did_not_measure_is_refused_before_decoding(
    h: Harness, mode: str
) -> None:
    credits = h.segmind.credits
    upload = h.upload(make_png_bomb(8000, 6000), width=512, height=512)  # the real size lies
    text = await assert_refused_at_no_cost(h, await h.edit("make it night", upload), credits)
    assert "8000x6000" in text and "40 megapixels" in text
    assert h.discord.cdn_requests  # only the downloaded header could tell


@pytest.mark.settings(max_input_megapixels_accepted=1)
async def test_the_cap_is_a_setting(h: Harness) -> None:
    credits = h.segmind.credits
    upload = h.upload(make_image(1200, 1000))
    text = await assert_refused_at_no_cost(h, await h.edit("make it night", upload), credits)
    assert "1 megapixels" in text


# -- Compare ----------------------------------------------------------------------------------


async def first_result(h: Harness, user_id: int = MEMBER_ID) -> dict[str, Any]:
    upload = h.upload(make_image(300, 200))
    return await h.answer(await h.edit("make it night", upload, user_id=user_id))


async def compare_picture(h: Harness, click: int) -> dict[str, Any]:
    found = await h.discord.wait_for(
        lambda: [m for m in h.discord.followups(click) if m.get("attachments")]
    )
    return found[0]  # type: ignore[index]


async def test_a_second_compare_press_waits_for_the_first_to_be_made(h: Harness) -> None:
    result = await first_result(h)
    async with h.bot.core.images.compare_lane():  # another Compare is being made
        first = await h.click(result, "compare")
        await h.discord.wait_for(lambda: h.discord.callbacks.get(first))
        second = await h.click(result, "compare")
        answer = await h.answer(second)
        assert answer["content"] == MSG_COMPARING and answer["flags"] & FLAG_EPHEMERAL
        assert not [m for m in h.discord.followups(first) if m.get("attachments")]
    picture = await compare_picture(h, first)
    assert picture["flags"] & FLAG_EPHEMERAL


async def test_members_compare_one_after_another_in_their_own_lane(h: Harness) -> None:
    mine, theirs = await first_result(h), await first_result(h, OTHER_MEMBER_ID)
    async with h.bot.core.images.compare_lane():
        clicks = [
            await h.click(mine, "compare"),
            await h.click(theirs, "compare", user_id=OTHER_MEMBER_ID),
        ]
        # Edits do not wait for Compare's lane.
        assert (await first_result(h))["attachments"]
        for click in clicks:
            assert not [m for m in h.discord.followups(click) if m.get("attachments")]
    for click in clicks:
        assert (await compare_picture(h, click))["flags"] & FLAG_EPHEMERAL


def test_a_panorama_compare_is_drawn_no_wider_than_its_cap() -> None:
    panorama = make_image(8000, 100, "JPEG")
    picture = open_image(decoding.side_by_side(panorama, make_image(300, 200)))
    assert picture.width <= 2 * decoding.COMPARE_MAX_WIDTH + 8
    assert picture.height <= decoding.COMPARE_HEIGHT + 28


def test_compare_refuses_a_picture_over_the_cap_before_decoding_it() -> None:
    with pytest.raises(decoding.InvalidImage, match="more pixels"):
        decoding.side_by_side(make_png_bomb(8000, 6000), make_image(), max_pixels=40e6)


# -- the image pool --------------------------------------------------------------------------


async def test_image_work_waits_until_its_byte_budget_has_room() -> None:
    work = ImageWork(workers=2, budget_bytes=100)
    started: list[str] = []
    release = threading.Event()

    def job(name: str) -> str:
        started.append(name)
        release.wait(5)
        return name

    try:
        first = asyncio.create_task(work.run(job, "first", cost=60))
        second = asyncio.create_task(work.run(job, "second", cost=60))
        small = asyncio.create_task(work.run(job, "small", cost=0))
        await until(lambda: "first" in started)
        for _ in range(5):
            await asyncio.sleep(0)
        # A free thread, but not the bytes: the second waits, and so does everything after it.
        assert started == ["first"] and work.held == 60
        release.set()
        assert await asyncio.gather(first, second, small) == ["first", "second", "small"]
        assert work.peak_held <= 100 and work.held == 0
    finally:
        release.set()
        work.close()


async def test_a_call_larger_than_the_budget_runs_alone() -> None:
    work = ImageWork(workers=2, budget_bytes=100)
    try:
        assert await work.run(sum, [1, 2], cost=10**9) == 3
        assert work.peak_held == 100 and work.held == 0
    finally:
        work.close()


async def test_a_cancelled_caller_gives_the_budget_back_only_when_the_work_ends() -> None:
    work = ImageWork(workers=1, budget_bytes=100)
    release = threading.Event()
    try:
        running = asyncio.create_task(work.run(release.wait, 5, cost=80))
        await until(lambda: work.held == 80)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        assert work.held == 80  # the thread still decodes
        release.set()
        await until(lambda: work.held == 0)
    finally:
        release.set()
        work.close()
