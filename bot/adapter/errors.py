"""How errors reach members: friendly, private where Discord allows, never a crash.
Used by the global handler (cogs/errors.py), by views and modals (`on_error`) and by
the result buttons."""

from __future__ import annotations

import contextlib
import logging
import secrets
import time

import discord
from discord import app_commands

from bot.adapter.access import refuse_if_not_served
from bot.adapter.posting import ping_only, token_expired
from bot.adapter.quota_render import out_of_edits_text
from bot.errors import UserError
from bot.ledger import BudgetExceeded, QuotaExceeded

log = logging.getLogger(__name__)


async def send_ephemeral(interaction: discord.Interaction, text: str) -> None:
    """Answer privately, replacing a public "thinking..." placeholder if there is one."""
    if not interaction.response.is_done():
        await interaction.response.send_message(text, ephemeral=True)
        return
    # A followup after a public defer would edit the public placeholder; remove it first.
    with contextlib.suppress(discord.HTTPException):
        await interaction.delete_original_response()
    await interaction.followup.send(text, ephemeral=True)


def describe(error: BaseException) -> str | None:
    """A friendly text for errors the member caused; None for our own failures."""
    original = getattr(error, "original", error)
    if isinstance(original, QuotaExceeded | BudgetExceeded):
        return out_of_edits_text(original)
    if isinstance(original, UserError):
        return original.message
    if isinstance(error, app_commands.CommandOnCooldown):
        return f"Slow down a little: try again in {error.retry_after:.0f} s."
    if isinstance(error, app_commands.NoPrivateMessage):
        return "This command only works in a server."
    if isinstance(error, app_commands.MissingPermissions | app_commands.CheckFailure):
        return "You don't have permission to use this command."
    if isinstance(error, app_commands.TransformerError):
        return "One of the options has a value I can't use. Please check it and try again."
    return None


def incident_text(error: BaseException, context: str) -> str:
    """Log an unexpected error with an id the member can quote; returns what to tell them."""
    incident = secrets.token_hex(4)
    log.error("Incident %s in %s", incident, context, exc_info=getattr(error, "original", error))
    return f"Sorry, something went wrong on my side (incident `{incident}`)."


async def report(interaction: discord.Interaction, error: BaseException, context: str) -> None:
    """Tell the member what went wrong, privately; never raises."""
    text = describe(error) or incident_text(error, f"{context} for user {interaction.user.id}")
    try:
        clock = getattr(interaction.client, "clock", time.time)
        if token_expired(interaction, clock()) and isinstance(
            interaction.channel, discord.abc.Messageable
        ):
            # The interaction can no longer answer (a long queue): say it in the channel.
            user = interaction.user
            await interaction.channel.send(
                f"{user.mention} {text}",
                allowed_mentions=ping_only(user.id),
            )
        else:
            await send_ephemeral(interaction, text)
    except discord.HTTPException:
        log.warning("Could not deliver an error message for interaction %s", interaction.id)


class ReportingView(discord.ui.View):
    """A view whose callbacks' errors reach the member through the one handler, and
    which does nothing in a server that is not served."""

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        return not await refuse_if_not_served(interaction)

    async def on_error(
        self, interaction: discord.Interaction, error: Exception, item: discord.ui.Item, /
    ) -> None:
        await report(interaction, error, f"{type(self).__name__} {type(item).__name__}")


class ReportingModal(discord.ui.Modal):
    """A modal whose submit errors reach the member through the one handler, and which
    does nothing in a server that is not served."""

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        return not await refuse_if_not_served(interaction)

    async def on_error(self, interaction: discord.Interaction, error: Exception, /) -> None:
        await report(interaction, error, type(self).__name__)
