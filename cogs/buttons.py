"""The buttons under every result: Edit again, Reroll, Undo, Compare, Delete."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

import discord
from discord.ext import commands

from bot import db, images
from bot.config import Settings
from bot.errors import UserError
from bot.params import (
    PROMPT_MAX_CHARS,
    EditParams,
    build_params,
    next_step_params,
    split_inline_options,
)
from cogs import _flow
from cogs._access import is_admin
from cogs._render import ResultCard, image_file, result_embed
from cogs._views import BUTTONS_COG, CancelButton, ResultButton, result_view
from cogs.errors import report

if TYPE_CHECKING:
    from bot.client import KontextBot

log = logging.getLogger(__name__)

MSG_NOT_AUTHOR = "Only the member who made this edit (or an admin) can delete it."
MSG_FIRST_STEP = (
    "This is the first edit of its chain, so there is no earlier result to go back to. "
    "Use **Reroll** to try the original again, or **Edit again** to change this one."
)
MSG_UNKNOWN = "I have no record of that edit any more."


class EditAgainModal(discord.ui.Modal):
    """Asks for the next instruction; the previous one is shown as a placeholder."""

    instruction: discord.ui.TextInput[EditAgainModal]

    def __init__(self, cog: ResultButtons, gen: db.Generation, message: discord.Message) -> None:
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
        try:
            await self.cog.edit_again(interaction, self.gen, self.message, self.instruction.value)
        except Exception as exc:  # noqa: BLE001 - every failure is answered privately
            await report(interaction, exc, "Edit again")


def can_moderate(interaction: discord.Interaction, settings: Settings) -> bool:
    """Server staff: message moderators, and whoever counts as a bot admin."""
    return interaction.permissions.manage_messages or is_admin(interaction, settings)


class ResultButtons(commands.Cog, name=BUTTONS_COG):
    """Handles clicks on result buttons, including on results posted before a restart."""

    def __init__(self, bot: KontextBot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(ResultButton, CancelButton)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(ResultButton, CancelButton)

    async def on_cancel(self, interaction: discord.Interaction, job_id: int) -> None:
        """Cancel a queued edit; whoever waits on it tells the member (no charge)."""
        owner = self.bot.edits.queue.owner_of(job_id)
        if owner is not None and owner != interaction.user.id:
            text = "Only the member who asked for this edit can cancel it."
        elif self.bot.edits.cancel(job_id, interaction.user.id):
            await interaction.response.defer()
            return
        else:
            text = "That edit has already started (or finished), so it can't be cancelled."
        await interaction.response.send_message(text, ephemeral=True)

    async def on_button(
        self, interaction: discord.Interaction, action: str, generation_id: int
    ) -> None:
        try:
            gen = await db.get_generation(self.bot.database, generation_id)
            if gen is None:
                raise UserError(MSG_UNKNOWN)
            if action in ("again", "reroll", "undo"):
                await _flow.check_may_iterate(self.bot, gen, interaction.user.id)
            handler = getattr(self, f"_{action}")
            await handler(interaction, gen)
        except Exception as exc:  # noqa: BLE001 - every failure is answered privately
            await report(interaction, exc, f"button {action}")

    # -- Edit again ---------------------------------------------------------------------

    async def _again(self, interaction: discord.Interaction, gen: db.Generation) -> None:
        assert interaction.message is not None
        await interaction.response.send_modal(EditAgainModal(self, gen, interaction.message))

    async def edit_again(
        self,
        interaction: discord.Interaction,
        gen: db.Generation,
        message: discord.Message,
        text: str,
    ) -> None:
        prompt, changes = split_inline_options(text)
        params, seed_explicit = next_step_params(
            gen.params, bool(gen.seed_explicit), prompt, changes
        )
        await interaction.response.defer(thinking=True, ephemeral=True)
        source = self._shown_image(message) or await _flow.result_image(self.bot, gen)
        await self._start(
            interaction, source, params, seed_explicit, parent_id=gen.id, reply_to=message
        )

    # -- Reroll -------------------------------------------------------------------------

    async def _reroll(self, interaction: discord.Interaction, gen: db.Generation) -> None:
        # Acknowledge first: finding the input may ask Discord for a fresh copy.
        await interaction.response.defer(thinking=True, ephemeral=True)
        source = await _flow.input_of(self.bot, gen)
        p = gen.params
        params = build_params(  # same everything, a new random seed
            p.prompt,
            guidance=p.guidance,
            steps=p.steps,
            aspect_ratio=p.aspect_ratio,
            output_format=p.output_format,
            quality=p.quality,
        )
        await self._start(
            interaction,
            source,
            params,
            False,
            parent_id=gen.parent_id,
            reply_to=interaction.message,
        )

    async def _start(
        self,
        interaction: discord.Interaction,
        source: images.InputImage,
        params: EditParams,
        seed_explicit: bool,
        *,
        parent_id: int | None,
        reply_to: discord.Message | None,
    ) -> None:
        """Run an edit for an interaction already acknowledged with a private defer."""
        request = _flow.request_for_interaction(
            interaction,
            source="button",
            image=source,
            params=params,
            seed_explicit=seed_explicit,
            parent_id=parent_id,
        )
        await _flow.run_for_interaction(
            self.bot, interaction, request, reply_to=reply_to, private=True
        )

    @staticmethod
    def _shown_image(message: discord.Message | None) -> images.InputImage | None:
        if message is None or not message.attachments:
            return None
        return _flow.input_from_attachment(message.attachments[0])

    # -- Undo ---------------------------------------------------------------------------

    async def _undo(self, interaction: discord.Interaction, gen: db.Generation) -> None:
        if gen.parent_id is None:
            raise UserError(MSG_FIRST_STEP)
        parent = await db.get_generation(self.bot.database, gen.parent_id)
        if parent is None:
            raise UserError(MSG_UNKNOWN)
        await interaction.response.defer(thinking=True, ephemeral=True)
        source = await _flow.result_image(self.bot, parent)
        data = await self._download(source.url)
        step = await db.chain_step(self.bot.database, parent.id)
        filename = source.filename
        card = ResultCard.from_generation(
            parent, step=step, filename=filename, note=f"undo: back to step {step}"
        )
        assert isinstance(interaction.channel, discord.abc.Messageable)
        message = await interaction.channel.send(
            embed=result_embed(card),
            file=image_file(data, filename),
            view=result_view(parent.id),
            reference=interaction.message.to_reference(fail_if_not_exists=False)
            if interaction.message
            else None,
            allowed_mentions=discord.AllowedMentions.none(),
        )
        # The re-post stands for the parent: replies and buttons on it branch from there.
        await _flow.remember(self.bot, parent.id, message, is_result=False)
        await _flow.settle_placeholder(interaction, message, private=True)

    # -- Compare ------------------------------------------------------------------------

    async def _compare(self, interaction: discord.Interaction, gen: db.Generation) -> None:
        await interaction.response.defer(thinking=True, ephemeral=True)
        after = self._shown_image(interaction.message) or await _flow.result_image(self.bot, gen)
        before = await _flow.input_of(self.bot, gen)
        before_data, after_data = await asyncio.gather(
            self._download(before.url), self._download(after.url)
        )
        try:
            picture = await asyncio.to_thread(images.side_by_side, before_data, after_data)
        except images.InvalidImage:
            raise UserError("One of the two images can no longer be read.") from None
        await interaction.followup.send(
            file=image_file(picture, f"compare-{gen.id}.png"), ephemeral=True
        )

    async def _download(self, url: str) -> bytes:
        try:
            return await images.download(
                self.bot.downloads,
                url,
                max_bytes=self.bot.settings.max_input_bytes,
                allowed_hosts=self.bot.settings.discord_cdn_hosts,
            )
        except UserError:
            raise UserError(
                "That image is no longer available on Discord, so I can't show it."
            ) from None

    # -- Delete -------------------------------------------------------------------------

    async def _delete(self, interaction: discord.Interaction, gen: db.Generation) -> None:
        if gen.user_id != interaction.user.id and not can_moderate(interaction, self.bot.settings):
            raise UserError(MSG_NOT_AUTHOR)
        assert interaction.message is not None
        await interaction.response.defer(ephemeral=True, thinking=True)
        with contextlib.suppress(discord.NotFound):
            await interaction.message.delete()
        await db.mark_message_deleted(self.bot.database, interaction.message.id)
        await interaction.followup.send("Deleted.", ephemeral=True)


async def setup(bot: KontextBot) -> None:
    await bot.add_cog(ResultButtons(bot))
