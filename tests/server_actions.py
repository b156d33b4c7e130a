"""What admins and the operator do to the test server while the bot runs: slash
commands (`/admin`, `/operator`), new roles and channels; and builders for typed options."""

from __future__ import annotations

from typing import Any

from bot.client import KontextBot
from tests import world
from tests.fake_discord import FakeDiscord


class ServerActions:
    """Mixed into the Harness, which supplies the stand-in, the bot and `answer`."""

    discord: FakeDiscord
    bot: KontextBot

    async def answer(self, interaction_id: int, wait_s: float = 10.0) -> dict[str, Any]:
        raise NotImplementedError

    def channel_messages(self, channel_id: int = world.CHANNEL_ID) -> list[dict[str, Any]]:
        raise NotImplementedError

    async def run_command(
        self,
        name: str,
        options: dict[str, Any] | None = None,
        *,
        subcommand: list[str] | None = None,
        user_id: int = world.MEMBER_ID,
        permissions: int | None = None,
        member_roles: tuple[int, ...] = (),
    ) -> dict[str, Any]:
        """Send a slash command as Discord would deliver it; returns the bot's answer.

        `options` values are plain, or `user_opt(...)`-style dicts for typed options."""
        opts = [
            {"name": k, **v} if isinstance(v, dict) else {"name": k, "value": v}
            for k, v in (options or {}).items()
        ]
        payload = self.discord.slash_command(
            name,
            opts,
            user_id=user_id,
            guild_id=world.GUILD_ID,
            channel_id=world.CHANNEL_ID,
            subcommand=subcommand,
            permissions=permissions,
            member_roles=member_roles,
        )
        await self.discord.send_interaction(payload)
        return await self.answer(int(payload["id"]))

    async def admin(
        self,
        *subcommand: str,
        user_id: int = world.ADMIN_ID,
        permissions: int | None = world.MANAGE_GUILD,
        member_roles: tuple[int, ...] = (),
        **options: Any,
    ) -> dict[str, Any]:
        """`/admin <subcommand...> options` from a member with Manage Server (by default)."""
        return await self.run_command(
            "admin",
            options,
            subcommand=list(subcommand),
            user_id=user_id,
            permissions=permissions,
            member_roles=member_roles,
        )

    def _fake_member(self, user_id: int) -> dict[str, Any]:
        return next(
            m
            for m in self.discord.guilds[world.GUILD_ID]["members"]
            if m["user"]["id"] == str(user_id)
        )

    async def add_role(
        self, role_id: int, name: str, *, members: tuple[int, ...] = (), permissions: int = 0
    ) -> None:
        """Create a role while the bot runs (GUILD_ROLE_CREATE) and give it to `members`."""
        guild = self.discord.guilds[world.GUILD_ID]
        role = {
            "id": str(role_id),
            "name": name,
            "color": 0,
            "hoist": False,
            "icon": None,
            "unicode_emoji": None,
            "position": len(guild["roles"]),
            "permissions": str(permissions),
            "managed": False,
            "mentionable": False,
            "flags": 0,
        }
        guild["roles"].append(role)
        for user_id in members:
            self._fake_member(user_id)["roles"].append(str(role_id))
        await self.discord.dispatch(
            "GUILD_ROLE_CREATE", {"guild_id": str(world.GUILD_ID), "role": role}
        )
        await self.discord.wait_for(
            lambda: self.bot.get_guild(world.GUILD_ID).get_role(role_id),  # type: ignore[union-attr]
            message=f"role {role_id} in the bot's cache",
        )

    async def add_text_channel(
        self,
        channel_id: int = world.ALERTS_CHANNEL_ID,
        *,
        overwrites: list[dict] | None = None,
        nsfw: bool = False,
    ) -> None:
        """Create a text channel while the bot runs (CHANNEL_CREATE)."""
        guild = self.discord.guilds[world.GUILD_ID]
        channel = {
            "id": str(channel_id),
            "type": 0,
            "guild_id": str(world.GUILD_ID),
            "name": f"channel-{channel_id}",
            "position": len(guild["channels"]),
            "permission_overwrites": overwrites or [],
            "nsfw": nsfw,
            "topic": None,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "parent_id": None,
            "flags": 0,
        }
        self.discord.channels[channel_id] = channel
        guild["channels"].append(channel)
        await self.discord.dispatch("CHANNEL_CREATE", channel)
        await self.discord.wait_for(
            lambda: self.bot.get_channel(channel_id),
            message=f"channel {channel_id} in the bot's cache",
        )

    async def choose_alerts_channel(self) -> None:
        """An admin creates the alerts channel and has the server's alerts sent there."""
        await self.add_text_channel()
        await self.admin("alerts", channel=channel_opt(world.ALERTS_CHANNEL_ID))

    async def operator(
        self, *subcommand: str, user_id: int = world.OPERATOR_ID, **options: Any
    ) -> dict[str, Any]:
        """`/operator <subcommand> options`, by the operator unless `user_id` says otherwise."""
        return await self.run_command(
            "operator", options, subcommand=list(subcommand), user_id=user_id, permissions=None
        )

    def direct_messages(self, user_id: int = world.OPERATOR_ID) -> list[dict[str, Any]]:
        """What the bot sent to `user_id` in a DM, oldest first."""
        dm = self.discord.add_dm_channel(user_id)
        return self.channel_messages(int(dm["id"]))


def user_opt(user_id: int) -> dict[str, Any]:
    """A member/user option value (the stand-in guesses int options are integers)."""
    return {"type": 6, "value": user_id}


def channel_opt(channel_id: int) -> dict[str, Any]:
    return {"type": 7, "value": channel_id}


def role_opt(role_id: int) -> dict[str, Any]:
    return {"type": 8, "value": role_id}


def mentionable_opt(target_id: int) -> dict[str, Any]:
    return {"type": 9, "value": target_id}
