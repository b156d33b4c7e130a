"""`/edit`: an attached image and an instruction in, the edited image out."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.app_commands import Choice, Range
from discord.ext import commands

from bot.adapter import flow
from bot.adapter.messages import input_from_attachment, request_for_interaction
from bot.images import ACCEPTED_FORMATS_TEXT
from bot.params import (
    ASPECT_RATIOS,
    OUTPUT_FORMATS,
    PROMPT_MAX_CHARS,
    SEED_MAX,
    build_params,
)

if TYPE_CHECKING:
    from bot.client import KontextBot

log = logging.getLogger(__name__)


class Editing(commands.Cog):
    """Image editing commands."""

    def __init__(self, bot: KontextBot) -> None:
        self.bot = bot

    @app_commands.command(name="edit", description="Edit an image with FLUX.1 Kontext")
    @app_commands.guild_only()
    @app_commands.describe(
        image=f"The picture to edit ({ACCEPTED_FORMATS_TEXT})",
        prompt="What to change, e.g. 'make it night, keep the lighthouse'",
        aspect_ratio="Shape of the result (default: same as the input)",
        seed="Same seed + same input = same result (default: random, shown on the result)",
        guidance="How closely to follow the prompt, 0-10 (default 7)",
        steps="Inference steps, 4-50 (default 35; 25-35 is a good range)",
        output_format="File format of the result (default png)",
        quality="Quality for jpg/webp, 0-100 (default 90)",
    )
    @app_commands.choices(
        aspect_ratio=[Choice(name=r.replace("_", " "), value=r) for r in ASPECT_RATIOS],
        output_format=[Choice(name=f, value=f) for f in OUTPUT_FORMATS],
    )
    async def edit(
        self,
        interaction: discord.Interaction,
        image: discord.Attachment,
        prompt: Range[str, 1, PROMPT_MAX_CHARS],
        aspect_ratio: str | None = None,
        seed: Range[int, 0, SEED_MAX] | None = None,
        guidance: Range[float, 0.0, 10.0] | None = None,
        steps: Range[int, 4, 50] | None = None,
        output_format: str | None = None,
        quality: Range[int, 0, 100] | None = None,
    ) -> None:
        # Checks first: bad input is answered privately and costs nothing.
        params = build_params(
            prompt,
            seed=seed,
            guidance=guidance,
            steps=steps,
            aspect_ratio=aspect_ratio,
            output_format=output_format,
            quality=quality,
        )
        source_image = input_from_attachment(image)
        # Checked again when the edit is queued; checking here too answers privately,
        # before the public "thinking..." placeholder appears.
        self.bot.core.inputs.check(source_image)
        request = request_for_interaction(
            interaction,
            source="slash",
            image=source_image,
            params=params,
            seed_explicit=seed is not None,
        )
        # Acknowledged ("thinking...") once the edit is written down.
        flow.queue_for_interaction(self.bot, interaction, request, context="/edit")


async def setup(bot: KontextBot) -> None:
    await bot.add_cog(Editing(bot))
