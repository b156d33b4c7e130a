"""The worst memory a member can cause: edits on the largest picture the bot accepts, in
base64 mode (the bot decodes it), while members press Compare on such a picture."""

from __future__ import annotations

import asyncio
import importlib
from pathlib import Path
from typing import Any

from bench import standins
from bench.wiring import (
    GUILD_ID,
    BenchPoster,
    as_input,
    bench_settings,
    core,
    edit_request,
    log_to_file,
)
from bot.client import extension_names
from bot.db import generations
from bot.images import InputImage
from bot.service import Destination

Result = dict[str, Any]
FIRST_MEMBER_ID = 300_000
RPM_LIFTED = 10_000


class NoReader:
    """Compare is handed the result it shows, so it never reads a message."""

    async def first_image(self, channel_id: int, message_id: int) -> InputImage | None:
        return None


async def worst_case(cfg: Result) -> Result:
    """One edit on the worst picture (its generation is what Compare shows), then
    `edits` more edits and `compares` Compare presses, all at once, each by its own member."""
    for name in extension_names():  # the running bot has discord.py and every cog loaded
        importlib.import_module(name)
    data_dir = Path(cfg["data_dir"])
    images = {"worst": Path(cfg["image"]), "result": Path(cfg["result"])}
    async with standins.running(cfg["latency"], images) as stand:
        settings = bench_settings(
            data_dir,
            stand,
            segmind_input_mode="base64",
            segmind_max_concurrency=cfg["edits"],
            segmind_rpm=RPM_LIFTED,
        )
        log_to_file(data_dir / "bot.log")
        worst, shown = stand.attachments["worst"], as_input(stand.attachments["result"])
        poster = BenchPoster()
        async with core(settings) as c:
            first = await c.edits.run(
                edit_request(worst, FIRST_MEMBER_ID, "jpg"), to=Destination(poster)
            )
            poster.api_time(first)
            (gen,) = await generations.history(c.database, GUILD_ID, FIRST_MEMBER_ID, limit=1)

            async def edit(member: int) -> bool:
                request = edit_request(worst, member, "jpg")
                poster.api_time(await c.edits.run(request, to=Destination(poster)))
                return True

            async def compare(member: int) -> bool:
                picture = await c.chains.compare(gen, shown, NoReader(), member)
                return len(picture) > 0

            members = range(FIRST_MEMBER_ID + 1, FIRST_MEMBER_ID + 1 + cfg["edits"])
            pressers = range(FIRST_MEMBER_ID + 100, FIRST_MEMBER_ID + 100 + cfg["compares"])
            outcomes = await asyncio.gather(
                *(edit(m) for m in members),
                *(compare(m) for m in pressers),
                return_exceptions=True,
            )
            peak_held = c.images.peak_held
    errors = [f"{type(o).__name__}: {o}" for o in outcomes if isinstance(o, BaseException)]
    return {
        "edits_ok": sum(o is True for o in outcomes[: cfg["edits"]]),
        "compares_ok": sum(o is True for o in outcomes[cfg["edits"] :]),
        "errors": errors[:5],
        "pool_peak_mb": peak_held / 1048576,
        "input_bytes": images["worst"].stat().st_size,
    }
