"""How results and errors look in Discord."""

from __future__ import annotations

import io

import discord

from bot.pipeline import EditOutcome

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


def result_embed(outcome: EditOutcome) -> discord.Embed:
    """The compact card under an edited image."""
    p = outcome.params
    embed = discord.Embed(description=f"> {safe_text(p.prompt)}", colour=RESULT_COLOUR)
    embed.add_field(name="Seed", value=f"`{p.seed}`")
    embed.add_field(name="Time", value=f"{outcome.elapsed_s:.1f} s")
    cost = format_credits(outcome.cost.amount)
    if outcome.cost.source == "estimate":
        cost = f"~{cost}"
    embed.add_field(name="Cost", value=f"{cost} credits")
    options = outcome.params.non_defaults()
    if options:
        embed.add_field(
            name="Options",
            value=" · ".join(f"{_OPTION_LABELS[k]} {v}" for k, v in options.items()),
            inline=False,
        )
    embed.set_image(url=f"attachment://{outcome.filename}")
    footer = f"#{outcome.generation_id}"
    if outcome.reencoded:
        footer += " · re-encoded as JPEG to fit this server's upload limit"
    embed.set_footer(text=footer)
    return embed


def result_file(outcome: EditOutcome) -> discord.File:
    return discord.File(io.BytesIO(outcome.image), filename=outcome.filename)
