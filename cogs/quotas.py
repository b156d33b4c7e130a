"""`/quota`: what a member has used and has left, privately."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.adapter.messages import role_ids_of
from bot.adapter.quota_render import quota_embed

if TYPE_CHECKING:
    from bot.client import KontextBot


class Quotas(commands.Cog):
    """Members' view of their allowance."""

    def __init__(self, bot: KontextBot) -> None:
        self.bot = bot

    @app_commands.command(name="quota", description="How many credits you have left for edits")
    @app_commands.guild_only()
    async def quota(self, interaction: discord.Interaction) -> None:
        view = await self.bot.core.quota_view(
            interaction.guild_id or 0, interaction.user.id, role_ids_of(interaction.user)
        )
        embed = quota_embed(view)
        await interaction.response.send_message(embed=embed, ephemeral=True)


async def setup(bot: KontextBot) -> None:
    await bot.add_cog(Quotas(bot))
