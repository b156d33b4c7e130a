"""Private answers to commands (a followup once the interaction was deferred)."""

from __future__ import annotations

from typing import Any

import discord

NO_MENTIONS = discord.AllowedMentions.none()


async def reply(
    interaction: discord.Interaction,
    text: str = "",
    *,
    embed: discord.Embed | None = None,
    file: discord.File | None = None,
) -> None:
    """Every admin answer is private (a followup once the interaction was deferred)."""
    extra: dict[str, Any] = {}
    if embed is not None:
        extra["embed"] = embed
    if file is not None:
        extra["file"] = file
    if interaction.response.is_done():
        await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS, **extra)
    else:
        await interaction.response.send_message(
            text, ephemeral=True, allowed_mentions=NO_MENTIONS, **extra
        )
