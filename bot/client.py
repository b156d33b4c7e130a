"""The Discord client: owns the long-lived resources and loads the cogs."""

from __future__ import annotations

import asyncio
import importlib
import logging
import pkgutil
import time
from collections.abc import Callable

import discord
import httpx
from discord.ext import commands

from bot import db, jobs
from bot.alerts import Alert, Alerts, ApiWatch, BalanceWatch
from bot.config import Settings
from bot.credits import CreditMeter
from bot.health import ServiceHealth
from bot.ledger import Ledger
from bot.pipeline import EditPipeline
from bot.queue import QueueLimits
from bot.results import ResultStore
from bot.segmind import SegmindClient
from bot.service import EditService

log = logging.getLogger(__name__)

COGS_PACKAGE = "cogs"
DOWNLOAD_TIMEOUT = httpx.Timeout(30.0, connect=10.0)


def extension_names(package: str = COGS_PACKAGE) -> list[str]:
    """Every module in `package` whose name does not start with `_`."""
    module = importlib.import_module(package)
    return sorted(
        f"{package}.{info.name}"
        for info in pkgutil.iter_modules(module.__path__)
        if not info.name.startswith("_")
    )


class KontextBot(commands.Bot):
    """Holds the database connection, the HTTP clients and the edit pipeline."""

    database: db.Database
    pipeline: EditPipeline

    def __init__(self, settings: Settings, **options: object) -> None:
        intents = discord.Intents.default()
        intents.message_content = settings.message_content_intent
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            help_command=None,
            # Nothing the bot posts may ping anyone unless a call site opts in.
            allowed_mentions=discord.AllowedMentions.none(),
            **options,  # type: ignore[arg-type]
        )
        self.settings = settings
        # Wall clock for deadlines such as the 15-minute interaction token; tests move it.
        self.clock: Callable[[], float] = time.time
        self.health = ServiceHealth()
        self._http_clients: list[httpx.AsyncClient] = []
        self._closing: asyncio.Future[None] | None = None
        self._shutting_down: asyncio.Future[None] | None = None
        self.left_over: list[jobs.StoredJob] = []
        self.synced_commands: list[discord.app_commands.AppCommand] = []

    async def setup_hook(self) -> None:
        s = self.settings
        self.database = await db.connect(s.database_path)
        self.ledger = Ledger(
            self.database, default_credits=s.quota_default_credits, default_period=s.quota_period
        )
        await self.recover()
        api = SegmindClient.from_settings(s)
        downloads = httpx.AsyncClient(timeout=DOWNLOAD_TIMEOUT, follow_redirects=False)
        self._api = api
        self.downloads = downloads
        self._http_clients.append(downloads)
        meter = CreditMeter(
            self.database, model=s.segmind_model, fallback_estimate=s.segmind_cost_estimate
        )
        await meter.load()  # the account floor holds from the first edit after a restart
        self.api = api  # `/admin check` calls it directly
        self.alerts = Alerts(cooldown_s=s.alert_cooldown_minutes * 60)
        self.alerts.sinks.append(self.post_alert)
        self.health.incident_hooks.append(self.alerts.on_halt)
        meter.reading_hooks.append(BalanceWatch(self.alerts, s.alert_below_credits).seen)
        self.pipeline = EditPipeline(
            settings=s,
            database=self.database,
            api=ApiWatch(api, self.alerts, self.health),
            http=downloads,
            meter=meter,
            health=self.health,
            ledger=self.ledger,
            results=self.results,
        )
        self.edits = EditService(
            self.database,
            self.pipeline,
            QueueLimits(
                max_concurrency=s.segmind_max_concurrency,
                rpm=s.segmind_rpm,
                per_member_running=s.max_inflight_per_user,
                per_member_queued=s.max_queued_per_user,
                status_interval_s=s.status_update_interval_s,
            ),
        )
        self.edits.start()
        for name in extension_names():
            await self.load_extension(name)
        await self.sync_commands()

    async def recover(self) -> None:
        """Settle what a crash left: no call of this process can be running yet, so every
        pending generation was interrupted and every open reservation is stale."""
        # Read before the gateway connects: jobs this run creates must never be "recovered".
        self.left_over = await jobs.unfinished(self.database)
        interrupted = await db.fail_interrupted(self.database)
        if interrupted:
            log.warning("Marked %d interrupted generation(s) as failed", interrupted)
        await self.ledger.settle_stale(older_than_s=0)
        self.results = ResultStore(
            self.database,
            self.settings.results_dir,
            retention_s=self.settings.result_retention_hours * 3600,
        )
        await self.results.prune()

    async def shutdown(self) -> None:
        """SIGTERM: stop taking edits, let running ones finish (up to SHUTDOWN_GRACE_S),
        settle the rest, then close Discord, the HTTP clients and the database. A second
        signal waits for the same shutdown instead of cutting the grace period short."""
        if self._shutting_down is None:
            self._shutting_down = asyncio.ensure_future(self._shutdown_once())
        await asyncio.shield(self._shutting_down)

    async def _shutdown_once(self) -> None:
        if hasattr(self, "edits"):
            log.info("Shutting down: draining edits for up to %ss", self.settings.shutdown_grace_s)
            await self.edits.shutdown(self.settings.shutdown_grace_s)
        await self.close()

    async def sync_commands(self) -> None:
        """Sync to the configured guilds at once, else globally (which Discord rolls out slowly)."""
        if self.settings.discord_guild_ids:
            for guild_id in self.settings.discord_guild_ids:
                guild = discord.Object(guild_id)
                self.tree.copy_global_to(guild=guild)
                self.synced_commands = await self.tree.sync(guild=guild)
            log.info("Synced commands to %d guild(s)", len(self.settings.discord_guild_ids))
        else:
            self.synced_commands = await self.tree.sync()
            log.info("Synced %d global command(s)", len(self.synced_commands))

    async def post_alert(self, alert: Alert) -> None:
        """Post an alert in every server's alerts channel (chosen with `/admin alerts`)."""
        for guild_id, channel_id in await self.ledger.alerts_channels():
            channel = self.get_channel(channel_id)
            if not isinstance(channel, discord.TextChannel) or channel.guild.id != guild_id:
                log.warning("Alerts channel %s of server %s is gone", channel_id, guild_id)
                continue
            try:
                await channel.send(f"\N{WARNING SIGN} **Kontext alert:** {alert.text}")
            except discord.HTTPException as exc:
                log.warning("Could not post an alert in channel %s: %s", channel_id, exc)

    async def on_ready(self) -> None:
        log.info("Ready as %s in %d guild(s)", self.user, len(self.guilds))

    async def close(self) -> None:
        """Close once; every later caller waits for that one close to finish (asyncio.run
        must not end, and cancel it, while the database is still open)."""
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close_once())
        await asyncio.shield(self._closing)

    async def _close_once(self) -> None:
        try:
            if hasattr(self, "edits"):
                await self.edits.shutdown(0)  # no-op after a graceful shutdown()
            if hasattr(self, "alerts"):
                await self.alerts.drain()
            await super().close()
        finally:
            # aiosqlite's worker thread is not a daemon: an unclosed database hangs the exit.
            if hasattr(self, "_api"):
                await self._api.aclose()
            for client in self._http_clients:
                await client.aclose()
            if hasattr(self, "database"):
                await self.database.close()


def point_discord_at(api_url: str | None, gateway_url: str | None) -> None:
    """Send discord.py's REST and gateway traffic elsewhere (a local stand-in)."""
    import yarl

    if api_url:
        discord.http.Route.BASE = api_url.rstrip("/")
    if gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)
