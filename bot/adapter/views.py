"""The buttons under every result. Persistent: their custom ids carry the generation id,
and the dynamic item is registered at start-up, so old results keep working after restarts."""

from __future__ import annotations

import re
from typing import Any

import discord

from bot.adapter.access import refuse_if_not_served

ACTIONS: dict[str, tuple[str, str, discord.ButtonStyle]] = {
    "again": ("Edit again", "\N{PENCIL}", discord.ButtonStyle.primary),
    "reroll": ("Reroll", "\N{GAME DIE}", discord.ButtonStyle.secondary),
    "undo": ("Undo", "\N{LEFTWARDS ARROW WITH HOOK}", discord.ButtonStyle.secondary),
    "compare": ("Compare", "\N{LEFT RIGHT ARROW}", discord.ButtonStyle.secondary),
    "delete": ("Delete", "\N{WASTEBASKET}", discord.ButtonStyle.danger),
}
BUTTONS_COG = "ResultButtons"


async def _press(interaction: discord.Interaction, handler: str, *args: object) -> None:
    """Hand a click to the buttons cog. discord.py only logs a dynamic item's errors, so
    they go to the one error handler here; with the cog unloaded the member is told, not
    left with Discord's "interaction failed"."""
    from bot.adapter.errors import report  # errors imports this module's views

    if await refuse_if_not_served(interaction):
        return
    cog = interaction.client.get_cog(BUTTONS_COG)  # type: ignore[attr-defined]
    try:
        if cog is None:
            await interaction.response.send_message(
                "Editing is not available right now.", ephemeral=True
            )
            return
        await getattr(cog, handler)(interaction, *args)
    except Exception as exc:  # noqa: BLE001 - every failure is answered privately
        await report(interaction, exc, f"button {handler}")


class ResultButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"kontext:(?P<action>again|reroll|undo|compare|delete):(?P<generation>[0-9]{1,19})",
):
    """One action on one generation; the click is handled by the ResultButtons cog."""

    def __init__(self, action: str, generation_id: int) -> None:
        label, emoji, style = ACTIONS[action]
        super().__init__(
            discord.ui.Button(
                label=label,
                emoji=emoji,
                style=style,
                custom_id=f"kontext:{action}:{generation_id}",
            )
        )
        self.action = action
        self.generation_id = generation_id

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction,
        item: discord.ui.Button[Any],
        match: re.Match[str],
        /,
    ) -> ResultButton:
        return cls(match["action"], int(match["generation"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        await _press(interaction, "on_button", self.action, self.generation_id)


def result_view(generation_id: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for action in ACTIONS:
        view.add_item(ResultButton(action, generation_id))
    return view


class CancelButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"kontext:cancel:(?P<job>[0-9]{1,19})",
):
    """Cancels a queued edit (no charge); only its member may press it."""

    def __init__(self, job_id: int) -> None:
        super().__init__(
            discord.ui.Button(
                label="Cancel",
                style=discord.ButtonStyle.secondary,
                custom_id=f"kontext:cancel:{job_id}",
            )
        )
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction,
        item: discord.ui.Button[Any],
        match: re.Match[str],
        /,
    ) -> CancelButton:
        return cls(int(match["job"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        await _press(interaction, "on_cancel", self.job_id)


def cancel_view(job_id: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(CancelButton(job_id))
    return view
