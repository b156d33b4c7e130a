"""The bot's own core (bot.core.build), with a poster standing in for Discord."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.standins import API_KEY, CHANNEL_ID, Standins
from bot.cards import ResultCard
from bot.config import Settings
from bot.core import Core, build
from bot.images import InputImage
from bot.logs import setup_logging
from bot.params import build_params
from bot.ports import Posted
from bot.queue import Progress
from bot.requests import EditRequest

GUILD_ID = 4242
BOT_TOKEN = "bench-bot-token"
# Far above anything a run spends: the benchmark measures speed, not refusals.
QUOTA_CREDITS = 1e9
LAG_INTERVAL_S = 0.010


def bench_settings(data_dir: Path, standins: Standins, **overrides: object) -> Settings:
    """Real Settings from keyword arguments only (no .env, as tests/conftest.make_settings)."""
    values: dict[str, object] = {
        "discord_token": BOT_TOKEN,
        "segmind_api_key": API_KEY,
        "segmind_base_url": standins.segmind_url,
        "discord_cdn_hosts": (standins.cdn_host,),
        "database_path": data_dir / "kontext.db",
        "results_dir": data_dir / "results",
        "discord_guild_ids": (GUILD_ID,),
        "quota_default_credits": QUOTA_CREDITS,
        "server_budget_credits": QUOTA_CREDITS,  # the server's budget (5 credits by default)
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


def log_to_file(path: Path) -> None:
    """The bot's own INFO logging (formatting and redaction cost included), into a file."""
    setup_logging("INFO", [API_KEY, BOT_TOKEN])
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler.setStream(path.open("a", encoding="utf-8"))


class BenchPoster:
    """Stands in for Discord taking the upload (not timed): the core still claims,
    records the message and drops the kept file. Keeps each post's API time by message."""

    def __init__(self) -> None:
        self._messages = 0
        self.api_s: dict[int, float] = {}

    async def post(self, card: ResultCard, image: bytes) -> Posted:
        del image
        self._messages += 1
        self.api_s[self._messages] = card.elapsed_s or 0.0
        return Posted(
            channel_id=CHANNEL_ID,
            message_id=self._messages,
            attachment_id=self._messages,
            url=f"https://cdn.discordapp.com/attachments/{CHANNEL_ID}/{card.filename}",
            jump_url="",
        )

    def api_time(self, posted: Posted) -> float:
        """The API call time of a delivered edit; all the benchmark keeps of it."""
        return self.api_s.pop(posted.message_id)


@contextlib.asynccontextmanager
async def core(settings: Settings) -> AsyncIterator[Core]:
    """The bot's own core, built and started as the bot does at start-up."""
    made = await build(settings)
    made.start()
    try:
        yield made
    finally:
        await made.aclose()


def as_input(attachment: dict[str, Any]) -> InputImage:
    """A stand-in upload as discord.py describes an attachment to the cogs."""
    return InputImage(
        url=attachment["url"],
        filename=attachment["filename"],
        content_type=attachment["content_type"],
        size=attachment["size"],
        width=attachment["width"],
        height=attachment["height"],
        attachment_id=int(attachment["id"]),
    )


def edit_request(
    attachment: dict[str, Any], user_id: int, output_format: str | None
) -> EditRequest:
    """What the /edit cog builds from a member's upload (see cogs/_flow.py)."""
    return EditRequest(
        user_id=user_id,
        guild_id=GUILD_ID,
        channel_id=CHANNEL_ID,
        source="slash",
        image=as_input(attachment),
        params=build_params("make it a snowy night", output_format=output_format),
        seed_explicit=False,
    )


@dataclass
class StatusCounter:
    """Stands in for the cog's status message hook (a Discord edit), counting calls."""

    calls: int = 0

    async def show(self, progress: Progress) -> None:
        del progress
        self.calls += 1


@dataclass
class LoopLag:
    """A task that sleeps 10 ms in a loop; the worst overshoot is the loop's worst stall."""

    worst_s: float = 0.0
    samples: int = 0
    _task: asyncio.Task[None] | None = field(default=None, repr=False)

    async def _probe(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(LAG_INTERVAL_S)
            self.worst_s = max(self.worst_s, time.perf_counter() - before - LAG_INTERVAL_S)
            self.samples += 1

    async def __aenter__(self) -> LoopLag:
        self._task = asyncio.create_task(self._probe(), name="loop-lag-probe")
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
