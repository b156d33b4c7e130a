"""The bot's core objects wired exactly as `KontextBot.setup_hook` wires them, minus Discord."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.standins import API_KEY, CHANNEL_ID, Standins
from bot import db
from bot.alerts import Alerts, ApiWatch, BalanceWatch
from bot.client import DOWNLOAD_TIMEOUT
from bot.config import Settings
from bot.credits import CreditMeter
from bot.db import generations, messages
from bot.health import ServiceHealth
from bot.images import InputImage
from bot.ledger import Ledger
from bot.logs import setup_logging
from bot.params import build_params
from bot.pipeline import EditOutcome, EditPipeline, EditRequest
from bot.queue import Progress, QueueLimits
from bot.results import ResultStore
from bot.segmind import SegmindClient
from bot.service import EditService

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


@dataclass
class Core:
    """What `setup_hook` builds: database, ledger, API client, pipeline and edit service."""

    settings: Settings
    database: db.Database
    ledger: Ledger
    results: ResultStore
    edits: EditService
    alerts: Alerts
    api: SegmindClient
    downloads: httpx.AsyncClient
    _messages: int = 0

    async def deliver(self, outcome: EditOutcome) -> float:
        """The bot's side of delivering a result, as cogs/_flow.remember does once Discord
        has the message: record it and drop the kept file (the upload itself is not timed).
        Returns the API call time: all the benchmark keeps of the outcome and its bytes."""
        self._messages += 1
        await messages.record_delivery(
            self.database,
            outcome.generation_id,
            channel_id=CHANNEL_ID,
            message_id=self._messages,
            attachment_id=self._messages,
            url=f"https://cdn.discordapp.com/attachments/{CHANNEL_ID}/{outcome.filename}",
        )
        await self.results.forget(outcome.generation_id)
        return outcome.elapsed_s

    async def aclose(self) -> None:
        """As `KontextBot.close`: drain edits, alerts, then the clients and the database."""
        await self.edits.shutdown(0)
        await self.alerts.drain()
        await self.api.aclose()
        await self.downloads.aclose()
        await self.database.close()


@contextlib.asynccontextmanager
async def core(settings: Settings) -> AsyncIterator[Core]:
    """Build and start the core as the bot does at start-up; close it on exit."""
    s = settings
    database = await db.connect(s.database_path)
    ledger = Ledger(
        database, default_credits=s.quota_default_credits, default_period=s.quota_period
    )
    # KontextBot.recover: settle what an earlier run left (nothing here, but it is start-up work).
    await generations.fail_interrupted(database)
    await ledger.settle_stale(older_than_s=0)
    results = ResultStore(database, s.results_dir, retention_s=s.result_retention_hours * 3600)
    await results.prune()
    api = SegmindClient.from_settings(s)
    downloads = httpx.AsyncClient(timeout=DOWNLOAD_TIMEOUT, follow_redirects=False)
    meter = CreditMeter(database, model=s.segmind_model, fallback_estimate=s.segmind_cost_estimate)
    await meter.load()
    health = ServiceHealth()
    alerts = Alerts(cooldown_s=s.alert_cooldown_minutes * 60)
    health.incident_hooks.append(alerts.on_halt)
    meter.reading_hooks.append(BalanceWatch(alerts, s.alert_below_credits).seen)
    pipeline = EditPipeline(
        settings=s,
        database=database,
        api=ApiWatch(api, alerts, health),
        http=downloads,
        meter=meter,
        health=health,
        ledger=ledger,
        results=results,
    )
    edits = EditService(
        database,
        pipeline,
        QueueLimits(
            max_concurrency=s.segmind_max_concurrency,
            rpm=s.segmind_rpm,
            per_member_running=s.max_inflight_per_user,
            per_member_queued=s.max_queued_per_user,
            status_interval_s=s.status_update_interval_s,
        ),
    )
    edits.start()
    made = Core(s, database, ledger, results, edits, alerts, api, downloads)
    try:
        yield made
    finally:
        await made.aclose()


def edit_request(
    attachment: dict[str, Any], user_id: int, output_format: str | None
) -> EditRequest:
    """What the /edit cog builds from a member's upload (see cogs/_flow.py)."""
    return EditRequest(
        user_id=user_id,
        guild_id=GUILD_ID,
        channel_id=CHANNEL_ID,
        source="slash",
        image=InputImage(
            url=attachment["url"],
            filename=attachment["filename"],
            content_type=attachment["content_type"],
            size=attachment["size"],
            width=attachment["width"],
            height=attachment["height"],
            attachment_id=int(attachment["id"]),
        ),
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
