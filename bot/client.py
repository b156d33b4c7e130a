"""The Discord client: builds the core, loads the cogs, and is the core's way out to
Discord (alerts, and finishing what a restart left once the gateway is ready)."""

from __future__ import annotations

import asyncio
import importlib
import logging
import pkgutil
import time
from collections.abc import Callable

import discord
from discord.ext import commands

from bot import core as core_module
from bot.adapter.alert_text import alert_text
from bot.adapter.posting import DiscordChannels
from bot.config import Settings
from bot.core import Core
from bot.health import Incident
from bot.instance import InstanceLock

log = logging.getLogger(__name__)

COGS_PACKAGE = "cogs"


def extension_names(package: str = COGS_PACKAGE) -> list[str]:
    """Every module in `package` whose name does not start with `_`."""
    module = importlib.import_module(package)
    return sorted(
        f"{package}.{info.name}"
        for info in pkgutil.iter_modules(module.__path__)
        if not info.name.startswith("_")
    )


class KontextBot(commands.Bot):
    """discord.py's client around the core (`bot.core`), which holds every rule."""

    core: Core

    def __init__(
        self, settings: Settings, *, instance: InstanceLock | None = None, **options: object
    ) -> None:
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
        self._instance = instance  # the database lock the process took, handed to the core
        # Wall clock for deadlines such as the 15-minute interaction token; tests move it.
        self.clock: Callable[[], float] = time.time
        self._core: Core | None = None
        self._closing: asyncio.Future[None] | None = None
        self._shutting_down: asyncio.Future[None] | None = None
        self._recovering: asyncio.Task[None] | None = None
        self.synced_commands: list[discord.app_commands.AppCommand] = []

    async def setup_hook(self) -> None:
        self._core = self.core = await core_module.build(self.settings, instance=self._instance)
        self.core.alerts.sinks.append(self.post_alert)
        self.core.edits.start()
        for name in extension_names():
            await self.load_extension(name)
        await self.sync_commands()
        self._recovering = asyncio.create_task(self._finish_recovery(), name="recovery")

    async def _finish_recovery(self) -> None:
        await self.wait_until_ready()
        await self.core.recovery.finish(DiscordChannels(self))

    async def shutdown(self) -> None:
        """SIGTERM: stop taking edits, let running ones finish (up to SHUTDOWN_GRACE_S),
        settle the rest, then close Discord and the core. A second signal waits for the
        same shutdown instead of cutting the grace period short."""
        if self._shutting_down is None:
            self._shutting_down = asyncio.ensure_future(self._shutdown_once())
        await asyncio.shield(self._shutting_down)

    async def _shutdown_once(self) -> None:
        if self._core is not None:
            log.info("Shutting down: draining edits for up to %ss", self.settings.shutdown_grace_s)
            await self._core.edits.shutdown(self.settings.shutdown_grace_s)
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

    async def post_alert(self, incident: Incident) -> None:
        """Post an alert in every server's alerts channel (chosen with `/admin alerts`)."""
        text = alert_text(incident)
        for guild_id, channel_id in await self.core.admin.alerts_channels():
            channel = self.get_channel(channel_id)
            if not isinstance(channel, discord.TextChannel) or channel.guild.id != guild_id:
                log.warning("Alerts channel %s of server %s is gone", channel_id, guild_id)
                continue
            try:
                await channel.send(f"\N{WARNING SIGN} **Kontext alert:** {text}")
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
            if self._recovering is not None:
                self._recovering.cancel()
            if self._core is not None:
                await self._core.edits.shutdown(0)  # a no-op after a graceful shutdown
            await super().close()
        finally:
            if self._core is not None:
                await self._core.aclose()


def point_discord_at(api_url: str | None, gateway_url: str | None) -> None:
    """Send discord.py's REST and gateway traffic elsewhere (a local stand-in)."""
    import yarl

    if api_url:
        discord.http.Route.BASE = api_url.rstrip("/")
    if gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)
