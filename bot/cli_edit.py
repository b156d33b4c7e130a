"""`kontext-bot edit`: one edit through the same client and checks as the bot."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import httpx

from bot import images
from bot.config import ApiSettings
from bot.core import api_client, download_client
from bot.errors import UserError
from bot.params import build_params
from bot.segmind import SegmindError

EXIT_BAD_INPUT = 2
EXIT_API_FAILED = 1


async def _load_input(source: str, settings: ApiSettings, http: httpx.AsyncClient) -> bytes:
    if source.startswith(("http://", "https://")):
        # The operator chose this URL, so no host allow-list here.
        return await images.download(
            http, source, max_bytes=settings.max_input_bytes, allowed_hosts=None
        )
    return await asyncio.to_thread(_read_file, Path(source), settings)


def _read_file(path: Path, settings: ApiSettings) -> bytes:
    if not path.is_file():
        raise UserError(f"No such file: {path}")
    if path.stat().st_size > settings.max_input_bytes:
        raise UserError(f"{path} is over the {settings.max_input_mb:g} MB limit")
    return path.read_bytes()


def _checked(source: str, data: bytes, settings: ApiSettings) -> None:
    try:
        info = images.identify(data)
    except images.InvalidImage as exc:
        raise UserError(f"{source} is not a usable image ({exc})") from None
    images.check_input(
        images.InputImage(
            url=source,
            filename=f"input.{info.format}",
            content_type=f"image/{info.format}",
            size=len(data),
            width=info.width,
            height=info.height,
        ),
        settings.max_input_bytes,
        max_megapixels=settings.max_input_megapixels_accepted,
    )


def _write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


async def run_edit(settings: ApiSettings, args: argparse.Namespace) -> int:
    """Run the edit and print what it cost; returns the exit status."""
    api = api_client(settings)
    async with download_client() as http:
        try:
            params = build_params(
                args.prompt,
                seed=args.seed,
                guidance=args.guidance,
                steps=args.steps,
                aspect_ratio=args.aspect_ratio,
                output_format=args.output_format,
                quality=args.quality,
            )
            data = await _load_input(args.image, settings, http)
            _checked(args.image, data, settings)
            is_url = args.image.startswith(("http://", "https://"))
            api_input = await asyncio.to_thread(
                images.input_for_api,
                data,
                args.image,
                send_url=is_url and settings.segmind_input_mode == "url",
                max_megapixels=settings.max_input_megapixels,
                max_accepted_megapixels=settings.max_input_megapixels_accepted,
            )
        except UserError as exc:
            print(f"error: {exc.message}", file=sys.stderr)
            return EXIT_BAD_INPUT
        started = time.monotonic()
        try:
            result = await api.edit(api_input.value, params)
        except SegmindError as exc:
            print(f"error: {exc.message} (status {exc.status or '-'})", file=sys.stderr)
            return EXIT_API_FAILED
        finally:
            await api.aclose()
    await asyncio.to_thread(_write_file, args.output, result.image)
    cost = "unknown (no x-cost header)" if result.cost is None else f"{result.cost:g}"
    remaining = "unknown" if result.remaining_credits is None else f"{result.remaining_credits:g}"
    print(f"wrote {args.output} ({result.info.format}, {result.info.width}x{result.info.height})")
    print(f"seed: {result.seed if result.seed is not None else params.seed}")
    print(f"time: {time.monotonic() - started:.1f} s")
    print(f"cost: {cost}")
    print(f"remaining credits: {remaining}")
    return 0
