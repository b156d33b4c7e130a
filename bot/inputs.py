"""What an edit sends the API as its input: refused from Discord's description when it
can be, otherwise fetched from Discord's CDN and proven a sane image in the image pool.
A refused input costs nothing."""

from __future__ import annotations

import asyncio

import aiohttp
import httpx

from bot import decoding, images
from bot.config import Settings
from bot.images import InputImage
from bot.imagework import ImageWork


class EditInputs:
    """Checks, fetches and proves members' input images; one per bot."""

    def __init__(
        self,
        settings: Settings,
        http: aiohttp.ClientSession | httpx.AsyncClient,
        work: ImageWork,
    ) -> None:
        self._settings = settings
        self._http = http
        self._work = work

    def check(self, image: InputImage) -> str:
        """Refuse at once, from Discord's description alone, an image the bot will not take
        (type, size, sides, megapixels); returns its format."""
        return images.check_input(
            image,
            self._settings.max_input_bytes,
            max_megapixels=self._settings.max_input_megapixels_accepted,
        )

    def prepare(self, image: InputImage) -> asyncio.Task[images.ApiInput]:
        """Start fetching and proving an input now, for an edit about to run: it overlaps
        the bookkeeping before the call instead of following it."""
        task = asyncio.create_task(self.fetch(image), name="edit-input")
        task.add_done_callback(_retrieve)
        return task

    async def fetch(self, image: InputImage) -> images.ApiInput:
        """What the API gets as `input_image`. Either way the bytes are fetched from
        Discord's CDN and proven to be a sane image first: the name, the content type and
        Discord's dimensions can all lie, and a refused input must cost nothing."""
        settings = self._settings
        data = await images.download(
            self._http,
            image.url,
            max_bytes=settings.max_input_bytes,
            allowed_hosts=settings.discord_cdn_hosts,
        )
        send_url = settings.segmind_input_mode == "url"
        limit = settings.max_input_megapixels * 1_000_000
        return await self._work.run(
            images.input_for_api,
            data,
            image.url,
            send_url=send_url,
            max_megapixels=settings.max_input_megapixels,
            max_accepted_megapixels=settings.max_input_megapixels_accepted,
            cost=decoding.decode_cost(data, check_only=send_url, max_pixels=limit),
        )


def _retrieve(task: asyncio.Task[images.ApiInput]) -> None:
    """A prepared input nobody awaited (its job was cancelled): its error is not news."""
    if not task.cancelled():
        task.exception()
