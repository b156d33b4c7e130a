"""The "Edit image" message context menu: any message with an image, no command to type."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.adapter import flow
from bot.adapter.errors import ReportingModal
from bot.adapter.messages import images_in, request_for_interaction
from bot.errors import UserError
from bot.images import ACCEPTED_FORMATS_TEXT, InputImage
from bot.params import PROMPT_MAX_CHARS, build_params, split_inline_options

if TYPE_CHECKING:
    from bot.client import KontextBot

log = logging.getLogger(__name__)

MSG_NO_IMAGE = f"That message has no image I can edit ({ACCEPTED_FORMATS_TEXT})."


class InstructionModal(ReportingModal, title="Edit image"):
    instruction: discord.ui.TextInput[InstructionModal] = discord.ui.TextInput(
        label="What should change?",
        style=discord.TextStyle.paragraph,
        placeholder="e.g. make it night, keep the lighthouse",
        max_length=PROMPT_MAX_CHARS,
    )

    def __init__(
        self, bot: KontextBot, target: discord.Message, source: InputImage, note: str | None
    ) -> None:
        super().__init__(timeout=15 * 60)
        self.bot, self.target, self.source, self.note = bot, target, source, note

    async def on_submit(self, interaction: discord.Interaction) -> None:
        chains = self.bot.core.chains
        # Asked again: an admin may have changed the rule while the box was open.
        parent = await chains.continued_from(self.source, interaction.user.id, interaction.guild_id)
        if parent is not None:  # one of the bot's results: the next step of its chain
            params, seed_explicit = chains.next_step(parent, self.instruction.value)
        else:
            prompt, changes = split_inline_options(self.instruction.value)
            seed = changes.pop("seed", None)
            params = build_params(prompt, seed=seed, **changes)  # type: ignore[arg-type]
            seed_explicit = seed is not None
        request = request_for_interaction(
            interaction,
            source="context",
            image=self.source,
            params=params,
            seed_explicit=seed_explicit,
            parent_id=parent.id if parent is not None else None,
        )
        flow.queue_for_interaction(
            self.bot,
            interaction,
            request,
            context=type(self).__name__,
            reply_to=self.target,
            note=self.note,
            private=True,
        )


class ContextMenu(commands.Cog):
    def __init__(self, bot: KontextBot) -> None:
        self.bot = bot
        self.menu = app_commands.ContextMenu(name="Edit image", callback=self.edit_image)
        self.menu.guild_only = True

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.menu.name, type=self.menu.type)

    async def edit_image(self, interaction: discord.Interaction, message: discord.Message) -> None:
        found = images_in(message)
        if not found:
            raise UserError(MSG_NO_IMAGE)
        # Checked before the modal, so a bad image is refused before the member types.
        self.bot.core.inputs.check(found[0])
        # Someone else's result may be off limits on this server: say so before the box.
        await self.bot.core.chains.continued_from(
            found[0], interaction.user.id, interaction.guild_id
        )
        note = f"used the first of {len(found)} images" if len(found) > 1 else None
        await interaction.response.send_modal(InstructionModal(self.bot, message, found[0], note))


async def setup(bot: KontextBot) -> None:
    await bot.add_cog(ContextMenu(bot))
