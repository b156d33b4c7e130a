"""What an edit sends the API as its input: refused from Discord's description when it
can be, otherwise fetched from Discord's CDN and proven a sane image in the image pool.
A refused input costs nothing."""

from __future__ import annotations

import asyncio
import struct

import aiohttp
import httpx

from bot import decoding, images, pngcheck
from bot.config import Settings
from bot.images import InputImage
from bot.imagework import ImageWork

# A PNG's signature, then IHDR's length and name, then its width and height.
_PNG_HEAD = len(pngcheck.SIGNATURE) + 16


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

    async def download(self, url: str, *, on_chunk: images.OnChunk | None = None) -> bytes:
        """A picture from Discord's CDN, at most MAX_INPUT_BYTES (edits, Compare, Undo)."""
        return await images.download(
            self._http,
            url,
            max_bytes=self._settings.max_input_bytes,
            allowed_hosts=self._settings.discord_cdn_hosts,
            on_chunk=on_chunk,
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
        send_url = settings.segmind_input_mode == "url"
        # Only the URL is sent: the PNG check runs as the bytes arrive, not after.
        along = PngAlong(self._work, self.max_pixels_accepted) if send_url else None
        try:
            data = await self.download(image.url, on_chunk=along.feed if along else None)
            png = await along.stream() if along else None
        finally:
            if along is not None:
                along.stop()
        limit = settings.max_input_megapixels * 1_000_000
        return await self._work.run(
            images.input_for_api,
            data,
            image.url,
            send_url=send_url,
            max_megapixels=settings.max_input_megapixels,
            max_accepted_megapixels=settings.max_input_megapixels_accepted,
            png=png,
            cost=decoding.decode_cost(data, check_only=send_url, max_pixels=limit),
        )


def _retrieve(task: asyncio.Task[images.ApiInput]) -> None:
    """A prepared input nobody awaited (its job was cancelled): its error is not news."""
    if not task.cancelled():
        task.exception()


class PngAlong:
    """Proves a PNG while it downloads: what has arrived goes through `pngcheck.PngStream`
    in the image pool, in order, while the rest arrives (pieces that come during one feed
    go together in the next), so the inflating overlaps the network instead of following
    it. Only a PNG whose header is within the accepted size is fed (a bomb's data is
    never inflated); anything else is left to the usual checks."""

    def __init__(self, work: ImageWork, max_pixels: float) -> None:
        self._work = work
        self._max_pixels = max_pixels
        self._head = bytearray()
        self._png: pngcheck.PngStream | None = None
        self._declined = False
        self._pending: list[bytes] = []
        self._feeding: asyncio.Task[None] | None = None

    async def feed(self, chunk: bytes) -> None:
        if self._declined:
            return
        if self._png is None:
            self._head += chunk
            if len(self._head) < _PNG_HEAD:
                return
            head, self._head = bytes(self._head), bytearray()
            if not self._worth_proving(head):
                self._declined = True
                return
            self._png, chunk = pngcheck.PngStream(), head
        self._pending.append(chunk)
        if self._feeding is None or self._feeding.done():
            self._feeding = asyncio.create_task(self._drain(self._png))

    async def _drain(self, png: pngcheck.PngStream) -> None:
        while self._pending:
            batch = b"".join(self._pending)
            self._pending.clear()
            await self._work.run(png.feed, batch, cost=decoding.PNG_CHECK_BYTES)

    async def stream(self) -> pngcheck.PngStream | None:
        """The check, fed every byte (None when this was not a PNG worth proving)."""
        if self._feeding is not None:
            await self._feeding
        return self._png

    def stop(self) -> None:
        """The download failed or was cancelled: drop what is still to feed."""
        self._pending.clear()
        if self._feeding is not None and not self._feeding.done():
            self._feeding.cancel()

    def _worth_proving(self, head: bytes) -> bool:
        if not head.startswith(pngcheck.SIGNATURE) or head[12:16] != b"IHDR":
            return False
        width, height = struct.unpack_from(">II", head, 16)
        return 0 < width * height <= self._max_pixels
