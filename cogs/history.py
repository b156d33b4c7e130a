"""`/history`: a member's recent edits in this server, newest first, paged."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot import db
from cogs import _flow
from cogs._render import RESULT_COLOUR, format_credits, jump_url, safe_text
from cogs.errors import report

if TYPE_CHECKING:
    from bot.client import KontextBot

PAGE_SIZE = 5
MSG_GONE = "That result is no longer kept (or was delivered already)."
PROMPT_PREVIEW = 80


def _line(gen: db.Generation, step: int) -> str:
    prompt = gen.prompt if len(gen.prompt) <= PROMPT_PREVIEW else gen.prompt[:PROMPT_PREVIEW] + "…"
    when = f"<t:{int(gen.created_at)}:R>"
    if gen.status == "succeeded":
        cost = f"{format_credits(gen.cost)} credits" if gen.cost is not None else "cost unknown"
        where = (
            f"[result]({jump_url(gen.guild_id, gen.result_channel_id, gen.result_message_id)})"
            if gen.result_message_id and gen.result_channel_id
            else "not delivered"
        )
        status = f"{cost} · {where}"
    elif gen.status == "failed":
        status = "failed, not charged"
    else:
        status = "running"
    return f"**#{gen.id}** · step {step} · {when} · {status}\n> {safe_text(prompt)}"


async def history_page(
    bot: KontextBot, guild_id: int, user_id: int, page: int
) -> tuple[discord.Embed, list[db.Generation]]:
    """One page of history, and the paid-for results on it that never reached Discord."""
    total = await db.history_count(bot.database, guild_id, user_id)
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(max(page, 0), pages - 1)
    rows = await db.history(
        bot.database, guild_id, user_id, limit=PAGE_SIZE, offset=page * PAGE_SIZE
    )
    lines = [_line(g, await db.chain_step(bot.database, g.id)) for g in rows]
    embed = discord.Embed(
        title="Your edits here",
        description="\n\n".join(lines) or "No edits yet: try `/edit`.",
        colour=RESULT_COLOUR,
    )
    embed.set_footer(text=f"Page {page + 1} of {pages} · {total} edit(s)")
    undelivered = [
        g for g in rows if g.status == "succeeded" and g.result_message_id is None and g.result_path
    ]
    return embed, undelivered


async def deliver_kept(bot: KontextBot, generation_id: int) -> discord.Message | None:
    """Post a paid-for result that never reached Discord, from the copy kept on disk."""
    if not bot.results.claim(generation_id):
        return None  # a second press while the first is still uploading
    try:
        gen = await db.get_generation(bot.database, generation_id)
        kept = await bot.results.load(generation_id)
        if gen is None or kept is None or gen.result_message_id is not None:
            return None
        return await _flow.post_kept_result(
            bot, gen, *kept, reply_to_message_id=None, note="delivered from /history", claimed=True
        )
    finally:
        bot.results.unclaim(generation_id)


class HistoryPager(discord.ui.View):
    """Previous/next for one member's private history message."""

    def __init__(self, bot: KontextBot, guild_id: int, user_id: int, total: int) -> None:
        super().__init__(timeout=10 * 60)
        self.bot, self.guild_id, self.user_id = bot, guild_id, user_id
        self.page = 0
        self.pages = max(1, -(-total // PAGE_SIZE))
        self._deliver_buttons: list[discord.ui.Button[HistoryPager]] = []

    def sync(self, undelivered: list[db.Generation]) -> None:
        """Paging buttons, plus a Deliver button for each undelivered result shown."""
        self.previous.disabled = self.page == 0
        self.next.disabled = self.page >= self.pages - 1
        for button in self._deliver_buttons:
            self.remove_item(button)
        self._deliver_buttons = []
        for gen in undelivered:
            button: discord.ui.Button[HistoryPager] = discord.ui.Button(
                label=f"Deliver #{gen.id}", style=discord.ButtonStyle.primary
            )
            button.callback = self._deliverer(gen.id)  # type: ignore[method-assign]
            self.add_item(button)
            self._deliver_buttons.append(button)

    def _deliverer(self, generation_id: int) -> Callable[[discord.Interaction], Awaitable[None]]:
        async def deliver(interaction: discord.Interaction) -> None:
            await interaction.response.defer(ephemeral=True, thinking=True)
            try:
                message = await deliver_kept(self.bot, generation_id)
            except Exception as exc:  # noqa: BLE001 - e.g. Discord still refuses: say so
                await report(interaction, exc, "history deliver")
                return
            await interaction.followup.send(
                f"Delivered: {message.jump_url}" if message else MSG_GONE, ephemeral=True
            )

        return deliver

    async def _show(self, interaction: discord.Interaction) -> None:
        embed, undelivered = await history_page(self.bot, self.guild_id, self.user_id, self.page)
        self.sync(undelivered)
        await interaction.response.edit_message(embed=embed, view=self)

    @discord.ui.button(label="Newer", emoji="\N{BLACK LEFT-POINTING TRIANGLE}")
    async def previous(self, interaction: discord.Interaction, _: discord.ui.Button) -> None:
        self.page = max(0, self.page - 1)
        await self._show(interaction)

    @discord.ui.button(label="Older", emoji="\N{BLACK RIGHT-POINTING TRIANGLE}")
    async def next(self, interaction: discord.Interaction, _: discord.ui.Button) -> None:
        self.page = min(self.pages - 1, self.page + 1)
        await self._show(interaction)


class History(commands.Cog):
    def __init__(self, bot: KontextBot) -> None:
        self.bot = bot

    @app_commands.command(name="history", description="Your recent edits in this server")
    @app_commands.guild_only()
    async def history(self, interaction: discord.Interaction) -> None:
        assert interaction.guild_id is not None
        total = await db.history_count(self.bot.database, interaction.guild_id, interaction.user.id)
        embed, undelivered = await history_page(
            self.bot, interaction.guild_id, interaction.user.id, 0
        )
        view = HistoryPager(self.bot, interaction.guild_id, interaction.user.id, total)
        view.sync(undelivered)
        await interaction.response.send_message(embed=embed, view=view, ephemeral=True)


async def setup(bot: KontextBot) -> None:
    await bot.add_cog(History(bot))
