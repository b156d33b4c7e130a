"""The Discord half of `kontext-bot doctor`: is the token good, and may the bot do its
job in each server and in each channel where /edit was used? Plain REST through
discord.py's HTTP client: the gateway is never connected."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import discord

from bot.config import Settings
from bot.doctor import FAIL, OK, WARN, Finding

log = logging.getLogger(__name__)

# What the bot needs wherever it posts results (see the README's invite steps).
NEEDED = discord.Permissions(
    view_channel=True,
    send_messages=True,
    embed_links=True,
    attach_files=True,
    read_message_history=True,
    add_reactions=True,
)
GUILDS_PAGE = 200
THREAD_TYPES = {10, 11, 12}
OVERWRITE_ROLE, OVERWRITE_MEMBER = 0, 1


def missing(permissions: int) -> list[str]:
    """The needed permissions `permissions` lacks, as Discord's settings name them."""
    have = discord.Permissions(permissions)
    return [
        name.replace("_", " ").title()
        for name, needed in NEEDED
        if needed and not getattr(have, name)
    ]


def base_permissions(guild: dict[str, Any], role_ids: list[int], user_id: int) -> int:
    """Server-wide permissions: @everyone and the member's roles (the owner and an
    Administrator have all)."""
    everything = discord.Permissions.all().value
    if int(guild["owner_id"]) == user_id:
        return everything
    roles = {int(r["id"]): int(r["permissions"]) for r in guild["roles"]}
    value = roles.get(int(guild["id"]), 0)
    for role_id in role_ids:
        value |= roles.get(role_id, 0)
    return everything if value & discord.Permissions(administrator=True).value else value


def channel_permissions(
    base: int, channel: dict[str, Any], guild_id: int, role_ids: list[int], user_id: int
) -> int:
    """Discord's order: @everyone's overwrite, then the roles' together, then the member's."""
    if base == discord.Permissions.all().value:
        return base
    overwrites = {int(o["id"]): o for o in channel.get("permission_overwrites") or []}
    value = base
    everyone = overwrites.get(guild_id)
    if everyone is not None:
        value = (value & ~int(everyone["deny"])) | int(everyone["allow"])
    allow = deny = 0
    for role_id in role_ids:
        over = overwrites.get(role_id)
        if over is not None and int(over["type"]) == OVERWRITE_ROLE:
            allow, deny = allow | int(over["allow"]), deny | int(over["deny"])
    value = (value & ~deny) | allow
    member = overwrites.get(user_id)
    if member is not None and int(member["type"]) == OVERWRITE_MEMBER:
        value = (value & ~int(member["deny"])) | int(member["allow"])
    return value


def _verdict(check: str, permissions: int) -> Finding:
    lacking = missing(permissions)
    if lacking:
        return Finding(check, FAIL, "missing " + ", ".join(lacking))
    return Finding(check, OK, "has every permission the bot needs")


async def _all_guilds(http: discord.http.HTTPClient) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while True:
        page = await http.get_guilds(GUILDS_PAGE, after=found[-1]["id"] if found else None)
        found += page
        if len(page) < GUILDS_PAGE:
            return found


async def _guild_findings(
    http: discord.http.HTTPClient, bot_id: int, partial: dict[str, Any], channel_ids: list[int]
) -> list[Finding]:
    guild_id = int(partial["id"])
    label = f"server {partial.get('name', '?')} ({guild_id})"
    guild = await http.get_guild(guild_id, with_counts=False)
    member = await http.get_member(guild_id, bot_id)
    role_ids = [int(r) for r in member.get("roles", [])]
    base = base_permissions(guild, role_ids, bot_id)
    findings = [_verdict(label, base)]
    if not channel_ids:
        findings.append(Finding("  (channels)", OK, "no /edit used here yet: none to check"))
        return findings
    channels = {int(c["id"]): c for c in await http.get_all_guild_channels(guild_id)}
    for channel_id in channel_ids:
        channel = channels.get(channel_id)
        if channel is None:  # a thread, or a channel deleted since
            try:
                channel = await http.get_channel(channel_id)
            except discord.NotFound:
                findings.append(Finding(f"  #{channel_id}", WARN, "channel deleted since"))
                continue
            if int(channel.get("type", 0)) in THREAD_TYPES and channel.get("parent_id"):
                parent = channels.get(int(channel["parent_id"]), {})
                channel = {**channel, "permission_overwrites": parent.get("permission_overwrites")}
        name = f"  #{channel.get('name', channel_id)} ({channel_id})"
        findings.append(
            _verdict(name, channel_permissions(base, channel, guild_id, role_ids, bot_id))
        )
    return findings


async def discord_findings(settings: Settings, channels: dict[int, list[int]]) -> list[Finding]:
    """The token, then every server the bot is in and its channels where /edit was used."""
    from bot.client import point_discord_at

    point_discord_at(settings.discord_api_url, None)
    http = discord.http.HTTPClient(asyncio.get_running_loop())
    try:
        try:
            me = await http.static_login(settings.discord_token.get_secret_value())
        except discord.LoginFailure:
            return [Finding("discord token", FAIL, "rejected by Discord: reset it (Bot page)")]
        except (discord.HTTPException, aiohttp.ClientError, OSError) as exc:
            return [Finding("discord token", FAIL, f"Discord unreachable ({type(exc).__name__})")]
        bot_id = int(me["id"])
        findings = [Finding("discord token", OK, f"accepted: the bot is {me['username']}")]
        guilds = await _all_guilds(http)
        if not guilds:
            findings.append(Finding("servers", WARN, "the bot is in no server: invite it"))
        for guild in guilds:
            try:
                findings += await _guild_findings(
                    http, bot_id, guild, channels.get(int(guild["id"]), [])
                )
            except discord.HTTPException as exc:
                detail = f"could not read it ({exc.status})"
                findings.append(Finding(f"server {guild.get('name')}", FAIL, detail))
        return findings
    finally:
        await http.close()
