"""The buttons under every result. Persistent: their custom ids carry the generation id,
and the dynamic item is registered at start-up, so old results keep working after restarts."""

from __future__ import annotations

import re
from typing import Any

import discord

from bot.adapter.access import refuse_if_not_served

ACTIONS: dict[str, tuple[str, str | None, discord.ButtonStyle]] = {
    "again": ("Edit again", "\N{PENCIL}", discord.ButtonStyle.primary),
    "reroll": ("Reroll", "\N{GAME DIE}", discord.ButtonStyle.secondary),
    "undo": ("Undo", "\N{LEFTWARDS ARROW WITH HOOK}", discord.ButtonStyle.secondary),
    "compare": ("Compare", "\N{LEFT RIGHT ARROW}", discord.ButtonStyle.secondary),
    "delete": ("Delete", "\N{WASTEBASKET}", discord.ButtonStyle.danger),
    # A queued edit's one button: its id is the job's, not a generation's.
    "cancel": ("Cancel", None, discord.ButtonStyle.secondary),
}
RESULT_ACTIONS = ("again", "reroll", "undo", "compare", "delete")
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


class ActionButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"kontext:(?P<action>again|reroll|undo|compare|delete|cancel):(?P<id>[0-9]{1,19})",
):
    """One action on one generation (or, for Cancel, on one queued job); the click is
    handled by the ResultButtons cog."""

    def __init__(self, action: str, target_id: int) -> None:
        label, emoji, style = ACTIONS[action]
        super().__init__(
            discord.ui.Button(
                label=label, emoji=emoji, style=style, custom_id=f"kontext:{action}:{target_id}"
            )
        )
        self.action = action
        self.target_id = target_id

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction,
        item: discord.ui.Button[Any],
        match: re.Match[str],
        /,
    ) -> ActionButton:
        return cls(match["action"], int(match["id"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        if self.action == "cancel":
            await _press(interaction, "on_cancel", self.target_id)
        else:
            await _press(interaction, "on_button", self.action, self.target_id)


def result_view(generation_id: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for action in RESULT_ACTIONS:
        view.add_item(ActionButton(action, generation_id))
    return view


def cancel_view(job_id: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(ActionButton("cancel", job_id))
    return view
