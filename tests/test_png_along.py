"""The PNG check that runs while an input downloads (url mode) reaches the same verdict as
the check of the whole file, and never inflates what it should not."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot import images, pngcheck
from bot.errors import BadInput
from bot.imagework import ImageWork
from bot.inputs import PngAlong
from tests.helpers import make_image, make_noise_png, make_png_bomb

MAX_PIXELS = 40e6


@pytest.fixture
async def work() -> AsyncIterator[ImageWork]:
    pool = ImageWork()
    yield pool
    pool.close()


async def fed(work: ImageWork, data: bytes, piece: int) -> pngcheck.PngStream | None:
    along = PngAlong(work, MAX_PIXELS)
    for start in range(0, len(data), piece):
        await along.feed(data[start : start + piece])
    return await along.stream()


def verdict(data: bytes, png: pngcheck.PngStream | None) -> str:
    try:
        images.input_for_api(
            data,
            "https://cdn/x.png",
            send_url=True,
            max_megapixels=2,
            max_accepted_megapixels=MAX_PIXELS / 1e6,
            png=png,
        )
    except BadInput as exc:
        return exc.message
    return "ok"


PHOTO = make_noise_png(300, 200)
CASES = {
    "whole": PHOTO,
    "truncated": PHOTO[: len(PHOTO) * 2 // 3],
    "bit flipped": PHOTO[:5000] + bytes([PHOTO[5000] ^ 0x10]) + PHOTO[5001:],
    "no end": PHOTO[:-12],
}


@pytest.mark.parametrize("piece", [999, 65536, 1 << 20])
@pytest.mark.parametrize("name", list(CASES))
async def test_fed_as_it_arrives_it_says_what_the_whole_file_check_says(
    work: ImageWork, name: str, piece: int
) -> None:
    data = CASES[name]
    png = await fed(work, data, piece)
    assert png is not None
    assert verdict(data, png) == verdict(data, None)


async def test_pieces_smaller_than_the_header_are_gathered_first(work: ImageWork) -> None:
    small = make_noise_png(40, 30)
    for data in (small, small[:-20]):
        png = await fed(work, data, 7)
        assert png is not None and png.decided
        assert verdict(data, png) == verdict(data, None)


async def test_a_bomb_is_never_inflated(work: ImageWork) -> None:
    bomb = make_png_bomb(7000, 7000)  # 49 MP: over the 40 MP accepted
    assert await fed(work, bomb, 65536) is None
    assert "megapixels" in verdict(bomb, None)


async def test_what_is_not_a_png_is_left_to_the_usual_checks(work: ImageWork) -> None:
    assert await fed(work, make_image(64, 48, "JPEG"), 1000) is None
    assert await fed(work, pngcheck.SIGNATURE[:5], 1000) is None  # too short to tell
