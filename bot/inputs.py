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

    @property
    def max_pixels_accepted(self) -> float:
        return self._settings.max_input_megapixels_accepted * 1_000_000

    def from_discord(self, url: str) -> bool:
        """Whether `url` is on Discord's CDN, the only place members' pictures come from."""
        return images.host_allowed(url, self._settings.discord_cdn_hosts)

    async def download(self, url: str) -> bytes:
        """A picture from Discord's CDN, at most MAX_INPUT_BYTES (edits, Compare, Undo)."""
        return await images.download(
            self._http,
            url,
            max_bytes=self._settings.max_input_bytes,
            allowed_hosts=self._settings.discord_cdn_hosts,
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
        data = await self.download(image.url)
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
