"""The stand-in's world: clock, snowflakes, users, guilds, members, roles, channels."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tests.fake_discord.common import (
    ADMINISTRATOR,
    ALL_PERMISSIONS,
    BOT_PERMISSIONS,
    DEFAULT_MEMBER_PERMISSIONS,
    DEFAULT_UPLOAD_LIMIT,
    DISCORD_EPOCH_MS,
    _iso,
)


class StateMixin:
    """Clock, ids and world building (users, guilds, members, roles, channels)."""

    # -- clock and ids -----------------------------------------------------

    def now(self) -> float:
        """The stand-in's wall clock: clock() plus whatever advance() added."""
        return self.clock() + self._skew

    def advance(self, seconds: float) -> None:
        """Move the stand-in's clock forward (tokens, deadlines, CDN URLs expire)."""
        self._skew += seconds

    def snowflake(self) -> int:
        value = (int(self.now() * 1000) - DISCORD_EPOCH_MS) << 22
        value = max(value, self._last_snowflake + 1)
        self._last_snowflake = value
        return value

    # -- world building ----------------------------------------------------

    def set_team(self, owner_id: int, members: dict[int, tuple[str, bool]]) -> None:
        """Make the application a team's: `members` maps each user id to its role
        ("admin", "developer", "read_only") and whether it accepted the invitation."""
        team_id = self.snowflake()
        self.team = {
            "id": str(team_id),
            "name": "Kontext team",
            "icon": None,
            "owner_user_id": str(owner_id),
            "members": [
                {
                    "membership_state": 2 if accepted else 1,
                    "permissions": ["*"],
                    "team_id": str(team_id),
                    "role": role,
                    "user": self._user(user_id),
                }
                for user_id, (role, accepted) in members.items()
            ],
        }

    def add_user(
        self,
        user_id: int,
        name: str | None = None,
        *,
        bot: bool = False,
        global_name: str | None = None,
    ) -> dict[str, Any]:
        user = {
            "id": str(user_id),
            "username": name or f"user{user_id}",
            "global_name": global_name,
            "discriminator": "0",
            "avatar": None,
            "bot": bot,
            "public_flags": 0,
            "flags": 0,
            "banner": None,
            "accent_color": None,
            "avatar_decoration_data": None,
        }
        self.users[user_id] = user
        return user

    def _user(self, user_id: int) -> dict[str, Any]:
        return self.users.get(user_id) or self.add_user(user_id)

    def _role(self, data: dict[str, Any], position: int) -> dict[str, Any]:
        role = {
            "id": str(data["id"]),
            "name": data.get("name", f"role{data['id']}"),
            "color": data.get("color", 0),
            "colors": {
                "primary_color": data.get("color", 0),
                "secondary_color": None,
                "tertiary_color": None,
            },
            "hoist": data.get("hoist", False),
            "icon": None,
            "unicode_emoji": None,
            "position": data.get("position", position),
            "permissions": str(int(data.get("permissions", 0))),
            "managed": data.get("managed", False),
            "mentionable": data.get("mentionable", False),
            "flags": 0,
        }
        if "tags" in data:
            role["tags"] = data["tags"]
        return role

    def _member(self, data: dict[str, Any], joined: float) -> dict[str, Any]:
        if "user" in data:
            user = data["user"]
            self.users.setdefault(int(user["id"]), user)
        else:
            uid = int(data.get("user_id", data.get("id", 0)))
            user = self.users.get(uid) or self.add_user(uid, data.get("name"))
        return {
            "user": user,
            "roles": [str(r) for r in data.get("roles", [])],
            "nick": data.get("nick"),
            "avatar": None,
            "banner": None,
            "joined_at": data.get("joined_at", _iso(joined)),
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "communication_disabled_until": None,
        }

    def add_guild(
        self,
        guild_id: int,
        *,
        name: str = "Test Guild",
        owner_id: int = 1,
        channels: list[int] | None = None,
        roles: list[dict[str, Any]] | None = None,
        members: list[dict[str, Any]] | None = None,
        attachment_size_limit: int = DEFAULT_UPLOAD_LIMIT,
    ) -> dict[str, Any]:
        """Add a guild the bot is in. `channels` default: one text channel guild_id + 1.

        `roles`: dicts with id, name, permissions (int). `members`: dicts with
        `id` (or a full `user` dict), optional `roles`, `nick`. The owner and the bot
        are always members. Call before the bot connects (GUILD_CREATE is sent then).
        """
        now = self.now()
        bot_role_id = self.snowflake()
        role_list = [
            self._role(
                {"id": guild_id, "name": "@everyone", "permissions": DEFAULT_MEMBER_PERMISSIONS}, 0
            ),
            self._role(
                {
                    "id": bot_role_id,
                    "name": self.bot_name,
                    "permissions": BOT_PERMISSIONS,
                    "managed": True,
                    "tags": {"bot_id": str(self.bot_user_id)},
                },
                1,
            ),
        ]
        role_list += [self._role(r, i + 2) for i, r in enumerate(roles or [])]
        member_list = [self._member(m, now) for m in members or []]
        have = {int(m["user"]["id"]) for m in member_list}
        if owner_id not in have:
            member_list.append(self._member({"id": owner_id}, now))
        if self.bot_user_id not in have:
            member_list.append(self._member({"user": self.bot_user, "roles": [bot_role_id]}, now))

        channel_ids = channels if channels is not None else [guild_id + 1]
        channel_list = []
        for pos, cid in enumerate(channel_ids):
            channel = {
                "id": str(cid),
                "type": 0,
                "guild_id": str(guild_id),
                "name": "general" if pos == 0 else f"channel-{pos}",
                "position": pos,
                "permission_overwrites": [],
                "nsfw": False,
                "topic": None,
                "last_message_id": None,
                "rate_limit_per_user": 0,
                "parent_id": None,
                "flags": 0,
            }
            self.channels[cid] = channel
            channel_list.append(channel)

        guild = {
            "id": str(guild_id),
            "name": name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(owner_id),
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "premium_progress_bar_enabled": False,
            "preferred_locale": "en-US",
            "features": [],
            "roles": role_list,
            "emojis": [],
            "stickers": [],
            "system_channel_id": channel_list[0]["id"] if channel_list else None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "vanity_url_code": None,
            "max_members": 500000,
            "max_video_channel_users": 25,
            "max_stage_video_channel_users": 50,
            "application_id": None,
            "widget_enabled": False,
            "incidents_data": None,
            "channels": channel_list,
            "members": member_list,
        }
        self.guilds[guild_id] = guild
        self.guild_upload_limits[guild_id] = attachment_size_limit
        self.commands.setdefault(guild_id, [])
        return guild

    def add_dm_channel(self, user_id: int, channel_id: int | None = None) -> dict[str, Any]:
        """A DM channel between the bot and `user_id`."""
        for channel in self.channels.values():
            if (
                channel["type"] == 1
                and channel["recipients"][0]["id"] == str(user_id)
                and (channel_id is None or int(channel["id"]) == channel_id)
            ):
                return channel
        cid = channel_id if channel_id is not None else self.snowflake()
        channel = {
            "id": str(cid),
            "type": 1,
            "recipients": [self._user(user_id)],
            "last_message_id": None,
            "flags": 0,
        }
        self.channels[cid] = channel
        return channel

    def _guild_member(self, guild_id: int, user_id: int) -> dict[str, Any] | None:
        for member in self.guilds[guild_id]["members"]:
            if member["user"]["id"] == str(user_id):
                return member
        return None

    def _permissions(self, guild_id: int, role_ids: Sequence[int | str]) -> int:
        guild = self.guilds[guild_id]
        wanted = {str(guild_id), *(str(r) for r in role_ids)}
        perms = 0
        for role in guild["roles"]:
            if role["id"] in wanted:
                perms |= int(role["permissions"])
        return ALL_PERMISSIONS if perms & ADMINISTRATOR else perms

    def _channel_guild(self, channel_id: int) -> int | None:
        channel = self.channels.get(channel_id)
        if channel is None or "guild_id" not in channel:
            return None
        return int(channel["guild_id"])

    def _upload_limit(self, channel_id: int) -> int:
        guild_id = self._channel_guild(channel_id)
        return (
            self.guild_upload_limits.get(guild_id, DEFAULT_UPLOAD_LIMIT)
            if guild_id
            else DEFAULT_UPLOAD_LIMIT
        )
