"""`/operator`: run the whole bot: which servers are served and what each may spend, the
Segmind account, the key, and pausing every edit. Only the operator (OPERATOR_IDS, else the
application's owner or team) may use it: checked by the bot on every call."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.app_commands import Range
from discord.ext import commands

from bot.adapter.answers import reply
from bot.adapter.quota_render import money
from bot.adapter.render import safe_text
from bot.adapter.spend_render import credits_embed, operator_servers_embed
from bot.errors import BadInput
from bot.keycheck import KeyCheckResult
from bot.operator import Resumed

if TYPE_CHECKING:
    from bot.client import KontextBot

OPERATOR_GROUP = "operator"
MAX_BUDGET = 1_000_000.0
REASON_MAX_CHARS = 200
MSG_BAD_SERVER_ID = "`server_id` must be a server's numeric id (right-click the server > Copy ID)."


def server_id_of(text: str) -> int:
    """Discord ids pass JavaScript's safe integers, so commands take them as text."""
    text = text.strip()
    if not text.isdigit() or not 0 < int(text) < 2**64:
        raise BadInput(MSG_BAD_SERVER_ID)
    return int(text)


@app_commands.default_permissions(administrator=True)
class Operator(
    commands.GroupCog,
    group_name=OPERATOR_GROUP,
    group_description="Run Kontext for every server: budgets, access, the account and the key",
):
    def __init__(self, bot: KontextBot) -> None:
        self.bot = bot
        self.core = bot.core
        super().__init__()

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        return self.core.operator.is_operator(interaction.user.id)

    def _name(self, guild_id: int) -> str:
        guild = self.bot.get_guild(guild_id)
        return safe_text(guild.name) if guild else "(the bot is not in it)"

    @app_commands.command(name="servers", description="Every server: spend, budget, access")
    async def servers(self, interaction: discord.Interaction) -> None:
        summaries = await self.core.servers.summaries({g.id for g in self.bot.guilds})
        await reply(interaction, embed=operator_servers_embed(summaries, self._name))

    @app_commands.command(name="budget", description="What one server may spend per period")
    @app_commands.describe(
        server_id="The server's id",
        credits="Credits per period (0: it cannot edit)",
        default="True: back to SERVER_BUDGET_CREDITS",
    )
    async def budget(
        self,
        interaction: discord.Interaction,
        server_id: str,
        credits: Range[float, 0.0, MAX_BUDGET] | None = None,
        default: bool = False,
    ) -> None:
        guild_id = server_id_of(server_id)
        if (credits is None) == (not default):
            await reply(interaction, "Give either `credits` or `default:True`.")
            return
        change = await self.core.servers.set_budget(guild_id, interaction.user.id, credits)
        await reply(
            interaction,
            f"{self._name(guild_id)} (`{guild_id}`) may now spend {change.after} credits per "
            f"period. (before: {change.before})",
        )

    @app_commands.command(name="allow", description="Serve a server")
    @app_commands.describe(server_id="The server's id")
    async def allow(self, interaction: discord.Interaction, server_id: str) -> None:
        await self._set_access(interaction, server_id, allowed=True)

    @app_commands.command(name="deny", description="Stop serving a server")
    @app_commands.describe(server_id="The server's id")
    async def deny(self, interaction: discord.Interaction, server_id: str) -> None:
        await self._set_access(interaction, server_id, allowed=False)

    async def _set_access(
        self, interaction: discord.Interaction, server_id: str, *, allowed: bool
    ) -> None:
        guild_id = server_id_of(server_id)
        change = await self.core.servers.set_allowed(guild_id, interaction.user.id, allowed)
        now = "is served" if allowed else "is no longer served"
        await reply(
            interaction, f"{self._name(guild_id)} (`{guild_id}`) {now}. (before: {change.before})"
        )

    @app_commands.command(name="credits", description="The Segmind balance, spend and trend")
    async def credits(self, interaction: discord.Interaction) -> None:
        report = await self.core.reports.spend(interaction.guild_id or 0)
        await reply(
            interaction, embed=credits_embed(report, halted_reason=self.core.health.halted_reason)
        )

    @app_commands.command(
        name="check", description="Test the API key with one tiny real edit (billed if it works)"
    )
    async def check(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        result = await self.core.operator.check_key(interaction.user.id)
        await reply(
            interaction,
            check_text(result, self.core.settings.account_reserve_credits, self.core.health.paused),
        )

    @app_commands.command(name="pause", description="Stop every new edit until /operator resume")
    @app_commands.describe(reason="Shown to members who try to edit meanwhile")
    async def pause(
        self, interaction: discord.Interaction, reason: Range[str, 1, REASON_MAX_CHARS]
    ) -> None:
        change = await self.core.operator.pause(interaction.user.id, reason)
        await reply(
            interaction,
            f"Every new edit is paused until `/operator resume`. (before: {change.before})",
        )

    @app_commands.command(name="resume", description="Let edits run again without a request")
    async def resume(self, interaction: discord.Interaction) -> None:
        resumed = await self.core.operator.resume(interaction.user.id)
        await reply(interaction, resume_text(resumed))


def resume_text(resumed: Resumed | None) -> str:
    if resumed is None:
        return "Edits are running already; nothing to resume."
    text = (
        "Edits can run again. No request was sent, so if the problem is not fixed the "
        "next edit will stop them again (and you are alerted)."
    )
    if resumed.balance_under_reserve:
        text += (
            f" Note: the last balance seen, {money(resumed.balance or 0)}, is under the "
            f"reserve of {money(resumed.reserve)}, so the next edit will pause them again. "
            "Top up, then run `/operator check` to read the new balance."
        )
    return text


def check_text(result: KeyCheckResult, reserve: float, paused: bool) -> str:
    """What the operator is told after `/operator check`."""
    if not result.authenticated:
        if result.status == 401:
            return (
                "Segmind rejected the key, so edits stay stopped. Fix SEGMIND_API_KEY and "
                "restart the bot, or run `/operator check` again once the key works."
            )
        if result.status == 406:
            return (
                "The key works, but Segmind says the account is out of credits, so edits "
                "stay paused. Top up at segmind.com, then run `/operator check` again."
            )
        return (
            f"The check could not finish ({result.error}). Nothing changed; try again in a minute."
        )
    if result.cost is None:
        cost = "Segmind refused the tiny test image, so nothing was billed."
    else:
        approx = "about " if result.cost.source == "estimate" else ""
        cost = f"That check was billed {approx}{money(result.cost.amount)} credits."
    balance = "" if result.balance is None else f" Balance: {money(result.balance)}."
    if paused:
        return f"The key works. {cost}{balance} Edits stay paused until `/operator resume`."
    if result.halted_reason:
        return (
            f"The key works. {cost}{balance} But the balance is still under the reserve of "
            f"{money(reserve)}, so new edits stay paused. Top up, then run `/operator check` "
            "again."
        )
    return f"The key works and edits are running. {cost}{balance}"


async def setup(bot: KontextBot) -> None:
    guilds = [discord.Object(g) for g in bot.settings.operator_guild_ids]
    await bot.add_cog(Operator(bot), guilds=guilds or discord.utils.MISSING)
