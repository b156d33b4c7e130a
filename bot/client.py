"""The Discord client: builds the core, loads the cogs, and is the core's way out to
Discord (alerts, and finishing what a restart left once the gateway is ready)."""

from __future__ import annotations

import asyncio
import gc
import importlib
import logging
import pkgutil
import time
from collections.abc import Callable

import discord
from discord import app_commands
from discord.ext import commands

from bot import core as core_module
from bot.adapter.access import refuse_if_not_served
from bot.adapter.alert_text import alert_text
from bot.adapter.ops_http import GatewayWatch, OpsServer
from bot.adapter.posting import DiscordChannels
from bot.config import Settings
from bot.core import Core
from bot.health import Incident
from bot.instance import InstanceLock
from cogs.operator import OPERATOR_GROUP

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


class KontextTree(app_commands.CommandTree):
    """Every command and menu first asks whether this server is served (the operator's
    own commands excepted: they work wherever the operator is)."""

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        command = interaction.command
        root = getattr(command, "root_parent", None) or command  # a menu has no parent
        if root is not None and root.name == OPERATOR_GROUP:
            return True
        return not await refuse_if_not_served(interaction)


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
            tree_cls=KontextTree,
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
        self.gateway = GatewayWatch(self)
        self.ops_http: OpsServer | None = None  # /healthz and /metrics, when HTTP_PORT is set

    async def setup_hook(self) -> None:
        self._core = self.core = await core_module.build(
            self.settings, channels=DiscordChannels(self), instance=self._instance
        )
        self.core.alerts.sinks.append(self.post_alert)
        await self._resolve_operators()
        self.core.metrics.watch_gateway(lambda: self.gateway.connected, lambda: self.latency)
        self.core.start()
        if self.settings.http_port is not None:
            self.ops_http = OpsServer(
                self.core,
                lambda: self.gateway.connected,
                host=self.settings.http_host,
                port=self.settings.http_port,
            )
            await self.ops_http.start()
        for name in extension_names():
            await self.load_extension(name)
        gc.freeze()  # the cogs too, like the core (see core.build)
        await self.sync_commands()
        self._recovering = asyncio.create_task(self._finish_recovery(), name="recovery")

    async def _resolve_operators(self) -> None:
        """OPERATOR_IDS, else whoever owns the application on Discord: its owner, or its
        team's owner and the admins who accepted (a developer or read-only member of the
        team does not run the bot's money)."""
        ids = self.settings.operator_ids
        if not ids:
            app = await self.application_info()
            ids = (app.owner.id,) if app.team is None else team_operators(app.team)
        self.core.operator.set_operators(ids)
        log.info("%d operator(s)", len(ids))

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
        for guild_id in set(self.settings.operator_guild_ids) - set(
            self.settings.discord_guild_ids
        ):
            await self.tree.sync(guild=discord.Object(guild_id))  # /operator lives there

    async def post_alert(self, incident: Incident) -> None:
        """Account alerts go to the operator (OPERATOR_ALERT_CHANNEL_ID, else a DM to each);
        a server's own alerts (its budget) to the channel its admins chose."""
        text = f"\N{WARNING SIGN} **Kontext alert:** {alert_text(incident)}"
        if incident.guild_id is None:
            await self._alert_operators(text)
            return
        channel_id = await self.core.admin.alerts_channel(incident.guild_id)
        channel = self.get_channel(channel_id) if channel_id else None
        if isinstance(channel, discord.TextChannel) and channel.guild.id == incident.guild_id:
            await self._send_alert(channel, text)
        elif channel_id:
            log.warning("Alerts channel %s of server %s is gone", channel_id, incident.guild_id)

    async def _alert_operators(self, text: str) -> None:
        channel_id = self.settings.operator_alert_channel_id
        if channel_id is not None:
            channel = self.get_channel(channel_id) or self.get_partial_messageable(channel_id)
            await self._send_alert(channel, text)  # type: ignore[arg-type]
            return
        for user_id in self.core.operator.operator_ids:
            try:
                user = self.get_user(user_id) or await self.fetch_user(user_id)
            except discord.HTTPException:
                log.warning("Could not find operator %s to alert", user_id)
                continue
            await self._send_alert(user, text)

    @staticmethod
    async def _send_alert(target: discord.abc.Messageable, text: str) -> None:
        try:
            await target.send(text)
        except discord.HTTPException as exc:  # e.g. DMs closed: logged above, never fatal
            log.warning("Could not post an alert: %s", exc)

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
            if self.ops_http is not None:
                await self.ops_http.stop()
            if self._core is not None:
                await self._core.aclose()


def point_discord_at(api_url: str | None, gateway_url: str | None) -> None:
    """Send discord.py's REST and gateway traffic elsewhere (a local stand-in)."""
    import yarl

    if api_url:
        discord.http.Route.BASE = api_url.rstrip("/")
    if gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)


def team_operators(team: discord.Team) -> tuple[int, ...]:
    """A team's owner and its admins who accepted their invitation."""
    admins = (
        m.id
        for m in team.members
        if m.role == discord.TeamMemberRole.admin
        and m.membership_state == discord.TeamMembershipState.accepted
    )
    owner = () if team.owner_id is None else (team.owner_id,)
    return tuple(dict.fromkeys((*owner, *admins)))
