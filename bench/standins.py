"""FakeSegmind and FakeDiscord's CDN in a process of their own.

Run apart from the bot so their CPU (decoding and re-encoding every image) and their memory
stay out of the bot's timings and its peak RSS. The parent reads one JSON line with the
addresses, and the stand-ins stop when the parent closes their stdin.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

API_KEY = "sk-bench-0123456789abcdef"
CHANNEL_ID = 4243
# Enough for every call of a run: a low balance would raise alerts or halt edits.
CREDITS = 1e9
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Standins:
    segmind_url: str
    cdn_host: str
    attachments: dict[str, dict[str, Any]]  # name -> Discord attachment object


async def _serve(delay: float, images: dict[str, Path]) -> None:
    # Imported here: the bot's processes load this module but must not carry the fakes.
    from tests.fake_discord import FakeDiscord
    from tests.fake_segmind import FakeSegmind

    async with (
        FakeSegmind(api_key=API_KEY, credits=CREDITS, delay=delay) as api,
        FakeDiscord() as cdn,
    ):
        attachments = {
            name: cdn.add_attachment(
                path.read_bytes(),
                f"{name}{path.suffix}",
                "image/png" if path.suffix == ".png" else "image/jpeg",
                channel_id=CHANNEL_ID,
            )
            for name, path in images.items()
        }
        ready = {"segmind_url": api.base_url, "cdn_host": cdn.cdn_host, "attachments": attachments}
        print(json.dumps(ready), flush=True)
        # Serve until the parent is done with us (or gone): its end of our stdin closes.
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


@contextlib.asynccontextmanager
async def running(delay: float, images: dict[str, Path]) -> AsyncIterator[Standins]:
    """Start the stand-ins with `delay` seconds of API latency; stop them on exit."""
    args = [f"{name}={path}" for name, path in images.items()]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.standins", "--delay", str(delay), *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), START_TIMEOUT_S)
        if not line:
            raise RuntimeError("the stand-ins exited before they were ready")
        yield Standins(**json.loads(line))
    finally:
        proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            proc.kill()
            await proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="Benchmark stand-ins (API + CDN)")
    parser.add_argument("--delay", type=float, default=0.0, help="API latency in seconds")
    parser.add_argument("images", nargs="*", help="name=path of a JPEG or PNG to serve on the CDN")
    args = parser.parse_args()
    images = {name: Path(path) for name, path in (item.split("=", 1) for item in args.images)}
    asyncio.run(_serve(args.delay, images))


if __name__ == "__main__":
    main()
