"""Who may do what, as Discord tells it: server admins for `/admin`, and whether this
server is served at all (the operator's list). Checked by the bot on every call."""

from __future__ import annotations

import discord

from bot.config import Settings
from bot.servers import MSG_NOT_SERVED, Servers


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


async def refuse_if_not_served(interaction: discord.Interaction) -> bool:
    """Answer once, privately, when this server is not served; True when refused.
    Nothing else happens for such an interaction: no row, no API call."""
    servers: Servers = interaction.client.core.servers  # type: ignore[attr-defined]
    if servers.allowed(interaction.guild_id):
        return False
    if not interaction.response.is_done():
        await interaction.response.send_message(MSG_NOT_SERVED, ephemeral=True)
    return True
