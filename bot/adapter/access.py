"""Who counts as a server admin for the bot's `/admin` commands."""

from __future__ import annotations

import discord

from bot.config import Settings


def is_admin(interaction: discord.Interaction, settings: Settings) -> bool:
    """Manage Server, as Discord computed it for this member in this channel, or a role
    listed in ADMIN_ROLE_IDS. Checked on every call: the client-side default permission
    only hides the commands and can be changed by the server."""
    if interaction.guild_id is None:
        return False
    permissions = interaction.permissions
    if permissions.manage_guild or permissions.administrator:
        return True
    roles = {role.id for role in getattr(interaction.user, "roles", ())}
    return not roles.isdisjoint(settings.admin_role_ids)
