"""`/history`: a member's recent edits in this server, newest first, paged, with a Deliver
button for a paid-for result that Discord would not take."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.adapter.errors import ReportingView
from bot.adapter.posting import DiscordChannels
from bot.adapter.render import RESULT_COLOUR, format_credits, jump_url, safe_text
from bot.history import HistoryEntry, HistoryPage

if TYPE_CHECKING:
    from bot.client import KontextBot

MSG_GONE = "That result is no longer kept (or was delivered already)."
NOTE_DELIVERED = "delivered from /history"
PROMPT_PREVIEW = 80


def _line(entry: HistoryEntry) -> str:
    gen = entry.generation
    prompt = gen.prompt if len(gen.prompt) <= PROMPT_PREVIEW else gen.prompt[:PROMPT_PREVIEW] + "…"
    when = f"<t:{int(gen.created_at)}:R>"
    if gen.status == "succeeded":
        cost = f"{format_credits(gen.cost)} credits" if gen.cost is not None else "cost unknown"
        if gen.result_message_id and gen.result_channel_id:
            link = jump_url(gen.guild_id, gen.result_channel_id, gen.result_message_id)
            status = f"{cost} · [result]({link})"
        elif entry.charge == "held":
            status = f"not delivered · {cost} held, charged only once delivered"
        elif entry.charge == "released":
            status = "not delivered · not charged"
        else:
            status = f"{cost} · not delivered"
    elif gen.status == "failed":
        status = "failed, not charged"
    else:
        status = "running"
    return f"**#{gen.id}** · step {entry.step} · {when} · {status}\n> {safe_text(prompt)}"


def history_embed(page: HistoryPage) -> discord.Embed:
    embed = discord.Embed(
        title="Your edits here",
        description="\n\n".join(_line(e) for e in page.entries) or "No edits yet: try `/edit`.",
        colour=RESULT_COLOUR,
    )
    embed.set_footer(text=f"Page {page.page + 1} of {page.pages} · {page.total} edit(s)")
    return embed


class HistoryPager(ReportingView):
    """Previous/next for one member's private history message, and Deliver buttons."""

    def __init__(self, bot: KontextBot, guild_id: int, user_id: int) -> None:
        super().__init__(timeout=10 * 60)
        self.bot, self.guild_id, self.user_id = bot, guild_id, user_id
        self.page = 0
        self._deliver_buttons: list[discord.ui.Button[HistoryPager]] = []

    def sync(self, page: HistoryPage) -> None:
        """Paging buttons, plus a Deliver button for each undelivered result shown."""
        self.page = page.page
        self.previous.disabled = page.page == 0
        self.next.disabled = page.page >= page.pages - 1
        for button in self._deliver_buttons:
            self.remove_item(button)
        self._deliver_buttons = []
        for entry in page.entries:
            if not entry.undelivered:
                continue
            generation_id = entry.generation.id
            button: discord.ui.Button[HistoryPager] = discord.ui.Button(
                label=f"Deliver #{generation_id}", style=discord.ButtonStyle.primary
            )
            button.callback = self._deliverer(generation_id)  # type: ignore[method-assign]
            self.add_item(button)
            self._deliver_buttons.append(button)

    def _deliverer(self, generation_id: int) -> Callable[[discord.Interaction], Awaitable[None]]:
        async def deliver(interaction: discord.Interaction) -> None:
            await interaction.response.defer(ephemeral=True, thinking=True)
            channels = DiscordChannels(self.bot)
            posted = await self.bot.core.delivery.deliver_kept(
                generation_id,
                lambda gen: channels.poster(gen.channel_id, gen.guild_id, reply_to_message_id=None),
                NOTE_DELIVERED,
            )
            await interaction.followup.send(
                f"Delivered: {posted.jump_url}" if posted else MSG_GONE, ephemeral=True
            )

        return deliver

    async def load(self, page: int) -> discord.Embed:
        found = await self.bot.core.history.page(self.guild_id, self.user_id, page)
        self.sync(found)
        return history_embed(found)

    @discord.ui.button(label="Newer", emoji="\N{BLACK LEFT-POINTING TRIANGLE}")
    async def previous(self, interaction: discord.Interaction, _: discord.ui.Button) -> None:
        await interaction.response.edit_message(embed=await self.load(self.page - 1), view=self)

    @discord.ui.button(label="Older", emoji="\N{BLACK RIGHT-POINTING TRIANGLE}")
    async def next(self, interaction: discord.Interaction, _: discord.ui.Button) -> None:
        await interaction.response.edit_message(embed=await self.load(self.page + 1), view=self)


class History(commands.Cog):
    def __init__(self, bot: KontextBot) -> None:
        self.bot = bot

    @app_commands.command(name="history", description="Your recent edits in this server")
    @app_commands.guild_only()
    async def history(self, interaction: discord.Interaction) -> None:
        assert interaction.guild_id is not None
        view = HistoryPager(self.bot, interaction.guild_id, interaction.user.id)
        embed = await view.load(0)
        await interaction.response.send_message(embed=embed, view=view, ephemeral=True)


async def setup(bot: KontextBot) -> None:
    await bot.add_cog(History(bot))
