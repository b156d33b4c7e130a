"""`/admin`: run Kontext in a server: allowances, blocks, spend, alerts and the API key.

Every subcommand is checked on the bot's side (`interaction_check`) on every call; the
Manage Server default only decides who sees the commands, and a server can change it.
"""

from __future__ import annotations

import contextlib
import io
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.app_commands import Choice, Range
from discord.ext import commands

from bot.adapter.access import is_admin
from bot.adapter.answers import reply
from bot.adapter.messages import role_ids_of
from bot.adapter.quota_render import (
    AUDIT_LINES,
    audit_embed,
    budget_embed,
    money,
    quota_embed,
    usage_embed,
)
from bot.administration import Change
from bot.reports import usage_csv

if TYPE_CHECKING:
    from bot.client import KontextBot

MAX_CREDITS = 1_000_000.0
MSG_SAFETY_NOT_ALLOWED = (
    "The bot's operator has not allowed the safety filter to be turned off, so it stays "
    "on everywhere. Nothing was changed."
)
REASON_MAX_CHARS = 200
EXPORT_NAME_LOOKUPS = 50
PER_PERIOD = {"day": "a day", "week": "a week", "month": "a month", "none": "in total"}
PERIODS = [
    Choice(name="day", value="day"),
    Choice(name="week", value="week"),
    Choice(name="month", value="month"),
    Choice(name="none (a fixed allowance that never resets)", value="none"),
]
USAGE_PERIODS = [
    Choice(name="today", value="day"),
    Choice(name="this week", value="week"),
    Choice(name="this month", value="month"),
    Choice(name="all time", value="none"),
]


async def member_names(guild: discord.Guild | None, user_ids: list[int]) -> dict[int, str]:
    """Display names for a report; without the members intent few are cached, so a
    bounded number are fetched and the rest stay as ids."""
    names: dict[int, str] = {}
    lookups = EXPORT_NAME_LOOKUPS
    for user_id in user_ids:
        member = guild.get_member(user_id) if guild else None
        if member is None and guild is not None and lookups > 0:
            lookups -= 1
            with contextlib.suppress(discord.HTTPException):
                member = await guild.fetch_member(user_id)
        if member is not None:
            names[user_id] = member.display_name
    return names


def was(change: Change) -> str:
    return f"(before: {change.before})"


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class Admin(
    commands.GroupCog,
    group_name="admin",
    group_description="Run Kontext here: allowances, blocks, spend, alerts, API key",
):
    quota = app_commands.Group(name="quota", description="Members' editing allowances")

    def __init__(self, bot: KontextBot) -> None:
        self.bot = bot
        self.core = bot.core
        super().__init__()

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        return is_admin(interaction, self.core.settings)

    def _ids(self, interaction: discord.Interaction) -> tuple[int, int]:
        return interaction.guild_id or 0, interaction.user.id

    async def _allowance_set(
        self,
        interaction: discord.Interaction,
        who: str,
        credits: float,
        change: Change,
        condition: str = "",
    ) -> None:
        """Confirm a new allowance in the server's own period ("… credits a week")."""
        default = await self.core.ledger.guild_default(interaction.guild_id or 0)
        per = PER_PERIOD[default.period]
        await reply(
            interaction,
            f"{who} can now spend {money(credits)} credits {per}{condition}. {was(change)}",
        )

    # -- allowances ---------------------------------------------------------------------

    @quota.command(name="set", description="Give one member their own allowance")
    @app_commands.describe(member="Who", credits="Credits per period (an edit costs about 0.04)")
    async def quota_set(
        self,
        interaction: discord.Interaction,
        member: discord.Member,
        credits: Range[float, 0.0, MAX_CREDITS],
    ) -> None:
        guild_id, actor = self._ids(interaction)
        change = await self.core.admin.set_member_quota(guild_id, actor, member.id, credits)
        await self._allowance_set(interaction, member.mention, credits, change)

    @quota.command(name="clear", description="Remove a member's or a role's own allowance")
    @app_commands.describe(target="The member or role whose allowance to remove")
    async def quota_clear(
        self, interaction: discord.Interaction, target: discord.Member | discord.Role
    ) -> None:
        guild_id, actor = self._ids(interaction)
        admin = self.core.admin
        if isinstance(target, discord.Role):
            change = await admin.set_role_quota(guild_id, actor, target.id, None)
        else:
            change = await admin.set_member_quota(guild_id, actor, target.id, None)
        await reply(
            interaction,
            f"{target.mention} has no allowance of its own any more; "
            f"the roles and the server default apply. {was(change)}",
        )

    @quota.command(name="reset", description="Clear a member's usage for this period")
    @app_commands.describe(member="Whose usage to clear")
    async def quota_reset(self, interaction: discord.Interaction, member: discord.Member) -> None:
        guild_id, actor = self._ids(interaction)
        change = await self.core.admin.reset_usage(guild_id, actor, member.id)
        status = await self.core.ledger.status(guild_id, member.id, role_ids_of(member))
        await reply(
            interaction,
            f"Cleared {member.mention}'s usage this period ({change.before}). "
            f"They have {money(status.left)} credits left.",
        )

    @quota.command(name="default", description="Every member's allowance, and how often it resets")
    @app_commands.describe(
        credits="Credits per period for members without a role or own allowance",
        period="When usage starts again from zero (UTC); default: unchanged",
    )
    @app_commands.choices(period=PERIODS)
    async def quota_default(
        self,
        interaction: discord.Interaction,
        credits: Range[float, 0.0, MAX_CREDITS],
        period: str | None = None,
    ) -> None:
        guild_id, actor = self._ids(interaction)
        change = await self.core.admin.set_guild_default(guild_id, actor, credits, period)
        await self._allowance_set(interaction, "Members", credits, change)

    @quota.command(name="role", description="An allowance for everyone with a role")
    @app_commands.describe(role="The role", credits="Credits per period (the highest role wins)")
    async def quota_role(
        self,
        interaction: discord.Interaction,
        role: discord.Role,
        credits: Range[float, 0.0, MAX_CREDITS],
    ) -> None:
        guild_id, actor = self._ids(interaction)
        change = await self.core.admin.set_role_quota(guild_id, actor, role.id, credits)
        await self._allowance_set(
            interaction,
            f"Members with {role.mention}",
            credits,
            change,
            ", unless they have their own allowance",
        )

    @quota.command(name="show", description="A member's allowance, usage and block")
    @app_commands.describe(member="Whose allowance to show")
    async def quota_show(self, interaction: discord.Interaction, member: discord.Member) -> None:
        guild_id, _ = self._ids(interaction)
        view = await self.core.quota_view(guild_id, member.id, role_ids_of(member))
        embed = quota_embed(view, member_id=member.id)
        await reply(interaction, embed=embed)

    # -- blocks -------------------------------------------------------------------------

    @app_commands.command(name="block", description="Stop a member from starting edits")
    @app_commands.describe(member="Who", reason="Shown to them when they try (optional)")
    async def block(
        self,
        interaction: discord.Interaction,
        member: discord.Member,
        reason: Range[str, 1, REASON_MAX_CHARS] | None = None,
    ) -> None:
        guild_id, actor = self._ids(interaction)
        await self.core.admin.block(guild_id, actor, member.id, reason)
        await reply(
            interaction, f"{member.mention} can't start edits now; they'll be told so if they try."
        )

    @app_commands.command(name="unblock", description="Let a blocked member edit again")
    @app_commands.describe(member="Who")
    async def unblock(self, interaction: discord.Interaction, member: discord.Member) -> None:
        guild_id, actor = self._ids(interaction)
        change = await self.core.admin.unblock(guild_id, actor, member.id)
        if change is None:
            await reply(interaction, f"{member.mention} wasn't blocked; nothing changed.")
            return
        await reply(interaction, f"{member.mention} can edit again. {was(change)}")

    # -- reports ------------------------------------------------------------------------

    @app_commands.command(name="usage", description="Top spenders: edits, credits, failures")
    @app_commands.describe(
        period="Which period (default: the allowance period)",
        export="Also attach every member's usage as a CSV file",
    )
    @app_commands.choices(period=USAGE_PERIODS)
    async def usage(
        self, interaction: discord.Interaction, period: str | None = None, export: bool = False
    ) -> None:
        guild_id, _ = self._ids(interaction)
        report = await self.core.reports.usage(guild_id, period)
        if not export:
            await reply(interaction, embed=usage_embed(report))
            return
        await interaction.response.defer(ephemeral=True, thinking=True)  # names take a moment
        names = await member_names(interaction.guild, [m.user_id for m in report.members])
        data = usage_csv(report, names).encode("utf-8")
        filename = f"usage-{report.label.replace(' ', '-')}.csv"
        await reply(
            interaction,
            embed=usage_embed(report),
            file=discord.File(io.BytesIO(data), filename=filename),
        )

    @app_commands.command(name="credits", description="This server's spend against its budget")
    async def credits(self, interaction: discord.Interaction) -> None:
        guild_id, _ = self._ids(interaction)
        await reply(interaction, embed=budget_embed(await self.core.ledger.budget(guild_id)))

    @app_commands.command(name="audit", description="The latest admin changes")
    async def audit(self, interaction: discord.Interaction) -> None:
        guild_id, _ = self._ids(interaction)
        entries = await self.core.admin.audit_log(guild_id, limit=AUDIT_LINES)
        await reply(interaction, embed=audit_embed(entries))

    # -- alerts and the API key ---------------------------------------------------------

    @app_commands.command(name="alerts", description="Where the bot warns admins (no channel: off)")
    @app_commands.describe(channel="A text channel the bot can post in; leave out to stop alerts")
    async def alerts(
        self, interaction: discord.Interaction, channel: discord.TextChannel | None = None
    ) -> None:
        guild_id, actor = self._ids(interaction)
        if channel is not None:
            me = channel.guild.me
            allowed = channel.permissions_for(me)
            if not (allowed.view_channel and allowed.send_messages):
                await reply(
                    interaction,
                    f"I can't post in {channel.mention}. Give me View Channel and Send "
                    "Messages there, then try again.",
                )
                return
        change = await self.core.admin.set_alerts_channel(
            guild_id, actor, channel.id if channel else None
        )
        if channel is None:
            await reply(interaction, f"Alerts are off for this server. {was(change)}")
            return
        await reply(
            interaction,
            f"Alerts will go to {channel.mention}: when this server has used 80 % and all "
            "of its editing budget. Each one once per period.",
        )

    @app_commands.command(
        name="safety", description="The safety filter in this server's age-restricted channels"
    )
    @app_commands.describe(
        filter_off="True: off in channels Discord marks age-restricted (if the operator allows)"
    )
    async def safety(self, interaction: discord.Interaction, filter_off: bool) -> None:
        guild_id, actor = self._ids(interaction)
        if filter_off and not self.core.settings.segmind_disable_safety_checker:
            await reply(interaction, MSG_SAFETY_NOT_ALLOWED)
            return
        change = await self.core.admin.set_safety_filter_off(guild_id, actor, filter_off)
        text = (
            "The safety filter is now off in this server's age-restricted channels, and on "
            "everywhere else."
            if filter_off
            else "The safety filter is on in every channel."
        )
        await reply(interaction, f"{text} {was(change)}")

    @app_commands.command(name="iteration", description="Who may continue a member's result")
    @app_commands.describe(author_only="True: only its author; False: anyone who sees it")
    async def iteration(self, interaction: discord.Interaction, author_only: bool) -> None:
        guild_id, actor = self._ids(interaction)
        change = await self.core.admin.set_iterate_author_only(guild_id, actor, author_only)
        who = "only its author" if author_only else "anyone who can see it"
        await reply(interaction, f"A result can now be continued by {who}. {was(change)}")


async def setup(bot: KontextBot) -> None:
    await bot.add_cog(Admin(bot))
