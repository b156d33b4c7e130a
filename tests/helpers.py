"""Builders for test data: real images in real formats."""

from __future__ import annotations

import io
import os
import random
import socket
import struct
import zlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Self, TypeVar

from aiohttp import web
from PIL import Image, PngImagePlugin

from bot.credits import Cost
from bot.db import Database, connect_read_only, generations
from bot.db.generations import NewGeneration
from bot.images import InputImage
from bot.params import build_params
from bot.requests import EditOutcome, EditRequest


def make_image(
    width: int = 256,
    height: int = 192,
    fmt: str = "PNG",
    colour: tuple[int, int, int] = (200, 40, 40),
    **save: object,
) -> bytes:
    """A real image with a two-tone pattern, so edits visibly change pixels."""
    img = Image.new("RGB", (width, height), colour)
    img.paste((20, 20, 220), (0, 0, width // 2, height // 2))
    out = io.BytesIO()
    img.save(out, fmt, **save)
    return out.getvalue()


def make_mpo(width: int = 256, height: int = 192) -> bytes:
    """A multi-picture JPEG (two shots), as 3D cameras and some phones write under .jpg."""
    left = Image.new("RGB", (width, height), (200, 40, 40))
    left.paste((20, 20, 220), (0, 0, width // 2, height // 2))
    right = Image.new("RGB", (width, height), (40, 200, 40))
    out = io.BytesIO()
    left.save(out, "MPO", save_all=True, append_images=[right])
    return out.getvalue()


def make_heic_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A real small HEIC whose header (`ispe`) claims `width`x`height`: tiny on disk,
    huge if anything believed it and decoded."""
    data = bytearray(make_image(640, 480, "HEIF"))
    at = data.find(b"ispe")
    assert at > 0, "pillow-heif wrote no ispe box"
    data[at + 8 : at + 16] = struct.pack(">II", width, height)  # after version/flags
    return bytes(data)


def open_image(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


EXIF_ORIENTATION = 0x0112
EXIF_MAKE = 0x010F
EXIF_GPS_IFD = 0x8825


def make_exif_jpeg(width: int = 200, height: int = 100, orientation: int = 6) -> bytes:
    """A JPEG carrying EXIF orientation, a camera make and a GPS position."""
    return make_exif_image(width, height, orientation, fmt="JPEG")


def make_exif_image(
    width: int = 200, height: int = 100, orientation: int = 6, *, fmt: str = "JPEG"
) -> bytes:
    """An image in `fmt` carrying EXIF orientation, a camera make and a GPS position
    (HEIF is written through the pillow-heif opener that bot.images registers)."""
    img = Image.new("RGB", (width, height), (10, 200, 10))
    img.paste((250, 250, 0), (0, 0, width // 4, height // 4))
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    exif[EXIF_MAKE] = "SecretCam"
    gps = exif.get_ifd(EXIF_GPS_IFD)
    gps[1] = "N"
    gps[2] = (48.0, 51.0, 29.0)
    out = io.BytesIO()
    img.save(out, fmt, exif=exif.tobytes())
    return out.getvalue()


def make_png_with_text(width: int = 100, height: int = 100, *, rgba: bool = False) -> bytes:
    """A PNG with tEXt/iTXt chunks (comment, XMP) that must not survive re-encoding."""
    mode, colour = ("RGBA", (1, 2, 3, 100)) if rgba else ("RGB", (1, 2, 3))
    img = Image.new(mode, (width, height), colour)
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "home-address-secret")
    info.add_itxt("XML:com.adobe.xmp", "<x:xmpmeta>gps-secret</x:xmpmeta>")
    out = io.BytesIO()
    img.save(out, "PNG", pnginfo=info)
    return out.getvalue()


def make_animation(
    frames: int,
    size: tuple[int, int] = (64, 64),
    fmt: str = "PNG",
    colours: tuple[tuple[int, int, int], ...] = ((255, 0, 0), (0, 0, 255)),
) -> bytes:
    """An animated PNG (APNG) or GIF whose frames cycle through `colours`."""
    images = [Image.new("RGB", size, colours[i % len(colours)]) for i in range(frames)]
    out = io.BytesIO()
    images[0].save(out, fmt, save_all=True, append_images=images[1:], duration=50)
    return out.getvalue()


def make_noise_png(width: int, height: int, seed: int = 1) -> bytes:
    """Random pixels: a PNG that compresses badly, for size-limit tests."""
    rng = random.Random(seed)
    img = Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def make_png_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A valid 1-bit PNG of `width`x`height` black pixels: tiny on disk, huge once decoded."""
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Started:
    """`async with` runs `start()` on entry and `stop()` on exit (the stand-in servers)."""

    async def start(self) -> object:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


class LocalServer(Started):
    """A real aiohttp server on 127.0.0.1 whose routes a test sets, even after start.

    `hits` lists every path requested, in order.
    """

    def __init__(self) -> None:
        self._routes: dict[str, Handler] = {}
        self.hits: list[str] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    def route(self, path: str, handler: Handler) -> str:
        """Serve `path` with `handler`; returns its full URL."""
        self._routes[path] = handler
        return self.url(path)

    def serve_bytes(self, path: str, data: bytes, content_type: str = "image/png") -> str:
        async def handler(_: web.Request) -> web.Response:
            return web.Response(body=data, content_type=content_type)

        return self.route(path, handler)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def host(self) -> str:
        """The `host:port` entry an allow-list needs for this server."""
        return f"127.0.0.1:{self.port}"

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        self.hits.append(request.path)
        handler = self._routes.get(request.path)
        if handler is None:
            return web.Response(status=404, text="not found")
        return await handler(request)

    async def start(self) -> LocalServer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


T = TypeVar("T")


async def read_database(path: Path, reader: Callable[[Database], Awaitable[T]]) -> T:
    """What another process wrote to the database at `path`, read through the bot's own
    queries on a read-only connection."""
    database = await connect_read_only(path)
    try:
        return await reader(database)
    finally:
        await database.close()


def make_input_image(**overrides: object) -> InputImage:
    """An attachment as Discord describes it; every field can be overridden."""
    fields: dict[str, object] = {
        "url": "https://cdn.discordapp.com/attachments/1/2/photo.png",
        "filename": "photo.png",
        "content_type": "image/png",
        "size": 200_000,
        "width": 1024,
        "height": 768,
        "attachment_id": 2,
    }
    fields.update(overrides)
    return InputImage(**fields)  # type: ignore[arg-type]


def make_noise_image(width: int, height: int, fmt: str = "PNG") -> bytes:
    """Random pixels: compresses badly, so results come out large."""
    img = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    out = io.BytesIO()
    img.save(out, fmt)
    return out.getvalue()


def unused_port() -> int:
    """A loopback port nothing listens on (bound then released), for connection-refused tests."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_new_generation(**overrides: object) -> NewGeneration:
    """A generation row about to be inserted; every field can be overridden."""
    fields: dict[str, object] = {
        "guild_id": 4242,
        "channel_id": 4243,
        "user_id": 5001,
        "source": "slash",
        "model": "flux-kontext-dev",
        "params": build_params("make it night", seed=1234),
        "seed_explicit": True,
        "input_mode": "url",
        "input": make_input_image(),
    }
    fields.update(overrides)
    return NewGeneration(**fields)  # type: ignore[arg-type]


async def record_success(
    database: Database,
    generation_id: int,
    *,
    cost: float | None = 0.04,
    cost_source: str | None = "header",
    remaining_credits: float | None = None,
    measured_cost: float | None = None,
) -> None:
    """Record a generation as succeeded, as the pipeline does; what a test does not look
    at (seed, timing, request id) is filled in."""
    await generations.mark_succeeded(
        database, generation_id, api_seed=1, api_time_s=1.0, request_id=None, cost=cost,
        cost_source=cost_source, remaining_credits=remaining_credits, reencoded=False,
        measured_cost=measured_cost,
    )  # fmt: skip


def make_edit_request(
    user_id: int = 5001, prompt: str = "make it night", **overrides: object
) -> EditRequest:
    """An EditRequest as a cog builds it; the prompt doubles as a label in queue tests."""
    fields: dict[str, object] = {
        "user_id": user_id,
        "guild_id": 4242,
        "channel_id": 4243,
        "source": "slash",
        "image": make_input_image(),
        "params": build_params(prompt, seed=1),
        "seed_explicit": True,
    }
    fields.update(overrides)
    return EditRequest(**fields)  # type: ignore[arg-type]


def make_edit_outcome(generation_id: int = 1, **overrides: object) -> EditOutcome:
    """A finished edit as the pipeline returns it."""
    fields: dict[str, object] = {
        "generation_id": generation_id,
        "image": make_image(64, 64),
        "filename": f"kontext-{generation_id}.png",
        "params": build_params("make it night", seed=1),
        "elapsed_s": 1.0,
        "cost": Cost(0.04, "estimate"),
        "remaining_credits": 99.96,
        "reencoded": False,
    }
    fields.update(overrides)
    return EditOutcome(**fields)  # type: ignore[arg-type]


# -- forged states: what only a crash, a past or a fault leaves behind -------------------
# The product never writes these rows this way, so no query of bot/db does; the SQL stays
# here, in one place, named for the state it forges.


async def forge_crash_during_upload(database: Database, *, charges_too: bool = False) -> None:
    """As if the process had died while posting a result: every job still 'running' and,
    with `charges_too`, every charge as the API's answer left it (reserved, no amount)."""
    await database.write("UPDATE jobs SET state = 'running', finished_at = NULL")
    if charges_too:
        await database.write("UPDATE charges SET state = 'reserved', amount = NULL")


async def forge_credit_reading(
    database: Database, at: float, remaining: float, generation_id: int | None = None
) -> None:
    """A balance the API reported at `at` (the bot stamps its own readings with now)."""
    await database.write(
        "INSERT INTO credit_readings (at, remaining, generation_id) VALUES (?, ?, ?)",
        (at, remaining, generation_id),
    )


async def break_audit_log(database: Database) -> None:
    """A database whose audit table is gone: every audited change must now fail whole."""
    await database.write("DROP TABLE audit_log")


async def forge_lost_transaction_at(database: Database, remaining: float) -> None:
    """As if the disk failed while a balance of `remaining` was written: that statement
    takes the whole transaction it runs in down with it (as SQLITE_FULL or an I/O
    error do)."""
    await database.write(
        f"""CREATE TEMP TRIGGER lose_the_transaction BEFORE INSERT ON credit_readings
            WHEN NEW.remaining = {float(remaining)!r}
            BEGIN SELECT RAISE(ROLLBACK, 'disk I/O error (forged)'); END"""
    )
