"""How results look in Discord."""

from __future__ import annotations

import io

import discord

from bot.cards import ResultCard

RESULT_COLOUR = discord.Colour.from_rgb(88, 101, 242)
_OPTION_LABELS = {
    "guidance": "guidance",
    "steps": "steps",
    "aspect_ratio": "aspect",
    "output_format": "format",
    "quality": "quality",
}


def safe_text(text: str) -> str:
    """Escape markdown and mentions so a prompt shows as typed and pings nobody."""
    return discord.utils.escape_mentions(discord.utils.escape_markdown(text))


def format_credits(amount: float | None) -> str:
    return "unknown" if amount is None else f"{amount:.4f}".rstrip("0").rstrip(".")


def jump_url(guild_id: int | None, channel_id: int, message_id: int) -> str:
    return f"https://discord.com/channels/{guild_id or '@me'}/{channel_id}/{message_id}"


def result_embed(card: ResultCard) -> discord.Embed:
    """The compact card under an edited image."""
    p = card.params
    description = f"> {safe_text(p.prompt)}\n<@{card.requester_id}> · step {card.step}"
    embed = discord.Embed(description=description, colour=RESULT_COLOUR)
    embed.add_field(name="Seed", value=f"`{p.seed}`")
    if card.elapsed_s is not None:
        embed.add_field(name="Time", value=f"{card.elapsed_s:.1f} s")
    if card.cost is not None:
        cost = format_credits(card.cost)
        embed.add_field(name="Cost", value=f"{'~' if card.cost_estimated else ''}{cost} credits")
    if card.quota_left is not None:
        embed.add_field(name="Left", value=f"{format_credits(card.quota_left)} credits")
    options = p.non_defaults()
    if options:
        embed.add_field(
            name="Options",
            value=" · ".join(f"{_OPTION_LABELS[k]} {v}" for k, v in options.items()),
            inline=False,
        )
    embed.set_image(url=f"attachment://{card.filename}")
    footer = f"#{card.generation_id} · reply to keep editing"
    if card.note:
        footer += f" · {card.note}"
    embed.set_footer(text=footer)
    return embed


def image_file(data: bytes, filename: str) -> discord.File:
    return discord.File(io.BytesIO(data), filename=filename)
