"""The buttons under every result: Edit again, Reroll, Undo, Compare, Delete, and Cancel
on a queued edit. Each parses the click, makes one core call, and renders the answer."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import discord
from discord.ext import commands

from bot.adapter import flow
from bot.adapter.access import is_admin
from bot.adapter.errors import ReportingModal
from bot.adapter.messages import Reader, request_for_interaction, shown_image
from bot.adapter.posting import ChannelPoster, settle_placeholder
from bot.adapter.render import image_file
from bot.adapter.views import BUTTONS_COG, ActionButton
from bot.db.generations import Generation
from bot.params import PROMPT_MAX_CHARS

if TYPE_CHECKING:
    from bot.client import KontextBot
    from bot.images import InputImage
    from bot.params import EditParams

MSG_NOT_OWNER = "Only the member who asked for this edit can cancel it."
MSG_STARTED = "That edit has already started (or finished), so it can't be cancelled."
ITERATING = ("again", "reroll", "undo")


class EditAgainModal(ReportingModal):
    """Asks for the next instruction; the previous one is shown as a placeholder."""

    instruction: discord.ui.TextInput[EditAgainModal]

    def __init__(self, cog: ResultButtons, gen: Generation, message: discord.Message) -> None:
        super().__init__(title="Edit again", timeout=15 * 60)
        self.cog, self.gen, self.message = cog, gen, message
        self.instruction = discord.ui.TextInput(
            label="What should change next?",
            style=discord.TextStyle.paragraph,
            placeholder=gen.prompt[:100],
            max_length=PROMPT_MAX_CHARS,
        )
        self.add_item(self.instruction)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await self.cog.edit_again(interaction, self.gen, self.message, self.instruction.value)


class ResultButtons(commands.Cog, name=BUTTONS_COG):
    """Handles clicks on result buttons, including on results posted before a restart."""

    def __init__(self, bot: KontextBot) -> None:
        self.bot = bot
        self.core = bot.core
        self.reader = Reader(bot)

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(ActionButton)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(ActionButton)

    async def on_cancel(self, interaction: discord.Interaction, job_id: int) -> None:
        """Cancel a queued edit; whoever waits on it tells the member (no charge)."""
        owner = self.core.edits.owner_of(job_id)
        if owner is not None and owner != interaction.user.id:
            text = MSG_NOT_OWNER
        elif self.core.edits.cancel(job_id, interaction.user.id):
            await interaction.response.defer()
            return
        else:
            text = MSG_STARTED
        await interaction.response.send_message(text, ephemeral=True)

    async def on_button(
        self, interaction: discord.Interaction, action: str, generation_id: int
    ) -> None:
        gen = await self.core.chains.generation(generation_id)
        if action in ITERATING:
            await self.core.chains.check_may_iterate(gen, interaction.user.id)
        await getattr(self, f"_{action}")(interaction, gen)

    async def _again(self, interaction: discord.Interaction, gen: Generation) -> None:
        assert interaction.message is not None
        await interaction.response.send_modal(EditAgainModal(self, gen, interaction.message))

    async def edit_again(
        self, interaction: discord.Interaction, gen: Generation, message: discord.Message, text: str
    ) -> None:
        # Asked again: an admin may have changed the rule while the box was open.
        await self.core.chains.check_may_iterate(gen, interaction.user.id)
        params, seed_explicit = self.core.chains.next_step(gen, text)
        source = shown_image(message) or await self.core.chains.result_image(gen, self.reader)
        await self._start(interaction, source, params, seed_explicit, gen.id, message)

    async def _reroll(self, interaction: discord.Interaction, gen: Generation) -> None:
        # Finding the input may ask Discord for a fresh copy (one quick request): the
        # click is acknowledged only once the edit is written down, within Discord's 3 s.
        source = await self.core.chains.input_of(gen, self.reader)
        params = self.core.chains.reroll(gen)
        await self._start(interaction, source, params, False, gen.parent_id, interaction.message)

    async def _start(
        self,
        interaction: discord.Interaction,
        source: InputImage,
        params: EditParams,
        seed_explicit: bool,
        parent_id: int | None,
        reply_to: discord.Message | None,
    ) -> None:
        """Queue an edit for a click; acknowledged privately once it is written down."""
        request = request_for_interaction(
            interaction,
            source="button",
            image=source,
            params=params,
            seed_explicit=seed_explicit,
            parent_id=parent_id,
        )
        flow.queue_for_interaction(
            self.bot, interaction, request, context="button", reply_to=reply_to, private=True
        )

    async def _undo(self, interaction: discord.Interaction, gen: Generation) -> None:
        parent = await self.core.chains.undo_target(gen)
        await interaction.response.defer(thinking=True, ephemeral=True)
        source = await self.core.chains.result_image(parent, self.reader)
        data = await self.core.chains.download(source.url)
        assert isinstance(interaction.channel, discord.abc.Messageable)
        reference = (
            interaction.message.to_reference(fail_if_not_exists=False)
            if interaction.message
            else None
        )
        posted = await self.core.delivery.repost(
            parent,
            data,
            source.filename,
            ChannelPoster(interaction.channel, reference),
            note="undo: back to step {step}",
        )
        await settle_placeholder(interaction, posted.jump_url, private=True)

    async def _compare(self, interaction: discord.Interaction, gen: Generation) -> None:
        await interaction.response.defer(thinking=True, ephemeral=True)
        picture = await self.core.chains.compare(
            gen, shown_image(interaction.message), self.reader, interaction.user.id
        )
        await interaction.followup.send(
            file=image_file(picture, f"compare-{gen.id}.png"), ephemeral=True
        )

    async def _delete(self, interaction: discord.Interaction, gen: Generation) -> None:
        staff = interaction.permissions.manage_messages or is_admin(interaction, self.core.settings)
        self.core.chains.check_may_delete(gen, interaction.user.id, is_staff=staff)
        assert interaction.message is not None
        await interaction.response.defer(ephemeral=True, thinking=True)
        with contextlib.suppress(discord.NotFound):
            await interaction.message.delete()
        await self.core.delivery.message_gone(interaction.message.id)
        await interaction.followup.send("Deleted.", ephemeral=True)


async def setup(bot: KontextBot) -> None:
    await bot.add_cog(ResultButtons(bot))
