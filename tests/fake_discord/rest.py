"""REST routes: users, the application, gateway info, channels, messages, reactions, guilds."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from aiohttp import web

from tests.fake_discord.common import (
    _CHANNEL_FLAGS,
    FLAG_EPHEMERAL,
    _ApiError,
    _form_error,
    _truthy,
    _unknown,
)


class RestMixin:
    """REST handlers for users, the application, channels, messages, reactions, guilds."""

    # -- REST: identity ------------------------------------------------------

    def _me(self) -> dict[str, Any]:
        return {
            **self.bot_user,
            "verified": True,
            "mfa_enabled": False,
            "email": None,
            "locale": "en-US",
        }

    async def _h_me(self, request: web.Request) -> web.Response:
        return self._ok(request, self._me())

    async def _h_my_guilds(self, request: web.Request) -> web.Response:
        """The bot's servers as partial guilds, in id order, paged by `after` and `limit`."""
        after = int(request.query.get("after", 0))
        limit = min(int(request.query.get("limit", 200)), 200)
        found = []
        for gid in sorted(self.guilds):
            if gid <= after:
                continue
            guild = self.guilds[gid]
            member = self._guild_member(gid, self.bot_user_id)
            found.append(
                {
                    "id": str(gid),
                    "name": guild["name"],
                    "icon": None,
                    "banner": None,
                    "owner": guild["owner_id"] == str(self.bot_user_id),
                    "permissions": str(self._permissions(gid, member["roles"] if member else [])),
                    "features": guild["features"],
                }
            )
        return self._ok(request, found[:limit])

    async def _h_user(self, request: web.Request) -> web.Response:
        uid = self._int(request, "user", "User", 10013)
        if uid not in self.users:
            raise _unknown("User", 10013)
        return self._ok(request, self.users[uid])

    async def _h_create_dm(self, request: web.Request) -> web.Response:
        body = self._json(request) or {}
        try:
            uid = int(body["recipient_id"])
        except (KeyError, TypeError, ValueError):
            raise _form_error(
                ["recipient_id"], "BASE_TYPE_REQUIRED", "This field is required"
            ) from None
        return self._ok(request, self.add_dm_channel(uid))

    async def _h_application(self, request: web.Request) -> web.Response:
        app = {
            "id": str(self.application_id),
            "name": self.bot_name,
            "icon": None,
            "description": "",
            "summary": "",
            "type": None,
            "hook": True,
            "bot_public": True,
            "bot_require_code_grant": False,
            "verify_key": "0" * 64,
            "owner": self._user(1),
            "team": self.team,
            "flags": 0,
            "bot": self.bot_user,
            "redirect_uris": [],
            "interactions_endpoint_url": None,
            "approximate_guild_count": len(self.guilds),
            "integration_types_config": {"0": {}},
        }
        return self._ok(request, app)

    async def _h_gateway_info(self, request: web.Request) -> web.Response:
        return self._ok(request, {"url": self.gateway_url})

    async def _h_gateway_bot(self, request: web.Request) -> web.Response:
        limit = {"total": 1000, "remaining": 999, "reset_after": 14400000, "max_concurrency": 1}
        return self._ok(
            request, {"url": self.gateway_url, "shards": 1, "session_start_limit": limit}
        )

    # -- REST: channels ------------------------------------------------------

    def _channel_id(self, request: web.Request) -> int:
        cid = self._int(request, "channel", "Channel", 10003)
        if cid not in self.channels:
            raise _unknown("Channel", 10003)
        return cid

    def _channel_message(self, request: web.Request) -> dict[str, Any]:
        """The message the route names, in the channel it names (checked first)."""
        cid = self._channel_id(request)
        mid = self._int(request, "mid", "Message", 10008)
        msg = self.messages.get(mid)
        # Ephemeral messages exist only for their interaction's webhook.
        if msg is None or int(msg["channel_id"]) != cid or msg["flags"] & FLAG_EPHEMERAL:
            raise _unknown("Message", 10008)
        return msg

    async def _h_channel(self, request: web.Request) -> web.Response:
        return self._ok(request, self.channels[self._channel_id(request)])

    async def _h_history(self, request: web.Request) -> web.Response:
        cid = self._channel_id(request)
        limit = max(1, min(100, int(request.query.get("limit", 50))))
        before = int(request.query.get("before", 0)) or None
        after = int(request.query.get("after", 0)) or None
        found = [
            m
            for mid, m in sorted(self.messages.items(), reverse=True)
            if int(m["channel_id"]) == cid
            and not m["flags"] & FLAG_EPHEMERAL
            and (before is None or mid < before)
            and (after is None or mid > after)
        ]
        return self._ok(request, [self._public(m) for m in found[:limit]])

    async def _h_channel_post(self, request: web.Request) -> web.Response:
        cid = self._channel_id(request)
        msg = self._build_message(
            channel_id=cid,
            payload=self._json(request),
            files=self._files(request),
            limit=self._upload_limit(cid),
            allowed_flags=_CHANNEL_FLAGS,
        )
        return self._publish(request, "MESSAGE_CREATE", msg)

    async def _h_channel_get(self, request: web.Request) -> web.Response:
        return self._ok(request, self._public(self._channel_message(request)))

    async def _h_channel_patch(self, request: web.Request) -> web.Response:
        msg = self._channel_message(request)
        if msg["author"]["id"] != str(self.bot_user_id):
            body = self._json(request) or {}
            if set(body) - {"flags"}:
                raise _ApiError(403, 50005, "Cannot edit a message authored by another user")
        limit = self._upload_limit(int(msg["channel_id"]))
        new = self._apply_edit(msg, self._json(request), self._files(request), limit)
        return self._publish(request, "MESSAGE_UPDATE", new)

    async def _h_channel_delete(self, request: web.Request) -> web.Response:
        msg = self._channel_message(request)
        self._delete(msg)
        return web.Response(status=204)

    def _publish(self, request: web.Request, event: str, msg: dict[str, Any]) -> web.Response:
        """Store a created or edited message, echo `event` to the bot, answer with it."""
        self._store(msg)
        self._echo(event, msg)
        return self._ok(request, self._public(msg))

    def _delete(self, msg: dict[str, Any]) -> None:
        mid = int(msg["id"])
        self.messages.pop(mid, None)
        self.deleted_messages[mid] = msg
        self._echo("MESSAGE_DELETE", msg)

    async def _h_typing(self, request: web.Request) -> web.Response:
        self._channel_id(request)
        return web.Response(status=204)

    def _emoji(self, request: web.Request) -> dict[str, Any]:
        raw = unquote(request.match_info["emoji"])
        if not raw:
            raise _ApiError(400, 10014, "Unknown Emoji")
        if ":" in raw:
            name, _, eid = raw.strip(":").rpartition(":")  # discord.py sends ":name:id"
            if not eid.isdigit():
                raise _ApiError(400, 10014, "Unknown Emoji")
            return {"id": eid, "name": name}
        return {"id": None, "name": raw}

    async def _h_reaction_put(self, request: web.Request) -> web.Response:
        msg = self._channel_message(request)
        emoji = self._emoji(request)
        reactions = msg.setdefault("reactions", [])
        for reaction in reactions:
            if reaction["emoji"] == emoji:
                if not reaction["me"]:
                    reaction["me"] = True
                    reaction["count"] += 1
                    reaction["count_details"]["normal"] += 1
                break
        else:
            reactions.append(
                {
                    "emoji": emoji,
                    "count": 1,
                    "count_details": {"burst": 0, "normal": 1},
                    "me": True,
                    "me_burst": False,
                    "burst_colors": [],
                }
            )
        return web.Response(status=204)

    async def _h_reaction_delete(self, request: web.Request) -> web.Response:
        msg = self._channel_message(request)
        emoji = self._emoji(request)
        for reaction in list(msg.get("reactions", [])):
            if reaction["emoji"] == emoji and reaction["me"]:
                reaction["me"] = False
                reaction["count"] -= 1
                reaction["count_details"]["normal"] -= 1
                if reaction["count"] <= 0:
                    msg["reactions"].remove(reaction)
        return web.Response(status=204)

    # -- REST: guilds --------------------------------------------------------

    def _guild_id(self, request: web.Request) -> int:
        gid = self._int(request, "guild", "Guild", 10004)
        if gid not in self.guilds:
            raise _unknown("Guild", 10004)
        return gid

    async def _h_guild(self, request: web.Request) -> web.Response:
        guild = self.guilds[self._guild_id(request)]
        out = {k: v for k, v in guild.items() if k not in ("channels", "members")}
        if _truthy(request.query.get("with_counts")):
            out["approximate_member_count"] = len(guild["members"])
            out["approximate_presence_count"] = 0
        return self._ok(request, out)

    async def _h_guild_channels(self, request: web.Request) -> web.Response:
        return self._ok(request, self.guilds[self._guild_id(request)]["channels"])

    async def _h_member(self, request: web.Request) -> web.Response:
        gid = self._guild_id(request)
        member = self._guild_member(gid, self._int(request, "user", "Member", 10007))
        if member is None:
            raise _unknown("Member", 10007)
        return self._ok(request, member)
