"""`/quota`: what a member has used and has left, privately."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from cogs._flow import role_ids_of
from cogs._quota_render import quota_embed

if TYPE_CHECKING:
    from bot.client import KontextBot


class Quotas(commands.Cog):
    """Members' view of their allowance."""

    def __init__(self, bot: KontextBot) -> None:
        self.bot = bot

    @app_commands.command(name="quota", description="How many credits you have left for edits")
    @app_commands.guild_only()
    async def quota(self, interaction: discord.Interaction) -> None:
        guild_id = interaction.guild_id or 0
        user_id = interaction.user.id
        ledger = self.bot.ledger
        status = await ledger.status(guild_id, user_id, role_ids_of(interaction.user))
        embed = quota_embed(
            status,
            cost=await self.bot.pipeline.meter.expected_cost(),
            block=await ledger.block_of(guild_id, user_id),
            halted_reason=self.bot.health.halted_reason,
        )
        await interaction.response.send_message(embed=embed, ephemeral=True)


async def setup(bot: KontextBot) -> None:
    await bot.add_cog(Quotas(bot))
