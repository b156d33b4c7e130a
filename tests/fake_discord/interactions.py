"""Gateway payloads tests dispatch: interactions of every kind and user messages."""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from typing import Any, TypedDict, Unpack

from tests.fake_discord.common import (
    ALL_PERMISSIONS,
    BOT_PERMISSIONS,
    DEFAULT_MEMBER_PERMISSIONS,
    DEFAULT_UPLOAD_LIMIT,
    InteractionState,
)


class Invoker(TypedDict, total=False):
    """What a command may say about who runs it; `_envelope` fills in what it leaves out
    (`permissions`: what the member's roles grant)."""

    permissions: int | None
    member_roles: Sequence[int]
    locale: str
    app_permissions: int | None


class InteractionsMixin:
    """INTERACTION_CREATE payloads (slash, autocomplete, context menu, component,
    modal) and user messages, registered so the callback routes know them."""

    # -- building gateway payloads ---------------------------------------------

    def _register_interaction(
        self, payload: dict[str, Any], *, dispatched: bool = False
    ) -> InteractionState:
        iid = int(payload["id"])
        it = self.interactions.get(iid)
        if it is None:
            it = InteractionState(
                id=iid,
                token=payload["token"],
                type=int(payload["type"]),
                payload=payload,
                channel_id=int(payload.get("channel_id") or payload.get("channel", {}).get("id")),
                guild_id=int(payload["guild_id"]) if payload.get("guild_id") else None,
                created=self.now(),
            )
            self.interactions[iid] = it
        if dispatched:
            it.created = self.now()
            it.dispatched_at = time.monotonic()
        return it

    def _envelope(
        self,
        itype: int,
        data: dict[str, Any] | None,
        *,
        user_id: int,
        guild_id: int | None,
        channel_id: int,
        permissions: int | None = None,
        member_roles: Sequence[int] = (),
        locale: str = "en-US",
        app_permissions: int | None = None,
        message: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        iid = self.snowflake()
        user = self._user(user_id)
        payload: dict[str, Any] = {
            "id": str(iid),
            "application_id": str(self.application_id),
            "type": itype,
            "token": "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(48),
            "version": 1,
            "locale": locale,
            "entitlements": [],
            "entitlement_sku_ids": [],
            "channel_id": str(channel_id),
        }
        if data is not None:
            payload["data"] = data
        if guild_id is not None:
            if guild_id not in self.guilds:
                raise KeyError(f"add_guild({guild_id}) first")
            guild = self.guilds[guild_id]
            channel = self.channels.get(channel_id)
            if channel is None or channel.get("guild_id") != str(guild_id):
                raise KeyError(f"channel {channel_id} is not in guild {guild_id}")
            member = self._guild_member(guild_id, user_id)
            if member is None:
                member = self._member({"id": user_id, "roles": list(member_roles)}, self.now())
                guild["members"].append(member)
            roles = list(member_roles) or member["roles"]
            perms = self._permissions(guild_id, roles) if permissions is None else permissions
            if int(guild["owner_id"]) == user_id and permissions is None:
                perms = ALL_PERMISSIONS
            bot_member = self._guild_member(guild_id, self.bot_user_id)
            bot_perms = self._permissions(guild_id, bot_member["roles"] if bot_member else [])
            payload.update(
                guild_id=str(guild_id),
                guild={
                    "id": str(guild_id),
                    "locale": guild["preferred_locale"],
                    "features": guild["features"],
                },
                guild_locale=guild["preferred_locale"],
                member={**member, "roles": [str(r) for r in roles], "permissions": str(perms)},
                channel={**channel, "permissions": str(perms)},
                app_permissions=str(bot_perms if app_permissions is None else app_permissions),
                authorizing_integration_owners={"0": str(guild_id)},
                context=0,
                attachment_size_limit=self.guild_upload_limits[guild_id],
            )
        else:
            channel = self.add_dm_channel(user_id, channel_id)
            payload.update(
                user=user,
                channel={**channel, "permissions": str(DEFAULT_MEMBER_PERMISSIONS)},
                app_permissions=str(
                    BOT_PERMISSIONS if app_permissions is None else app_permissions
                ),
                authorizing_integration_owners={"0": "0"},
                context=1,
                attachment_size_limit=DEFAULT_UPLOAD_LIMIT,
            )
        if message is not None:
            stored = self.messages.get(int(message["id"]))
            payload["message"] = self._public(stored if stored is not None else message)
        self._register_interaction(payload)
        return payload

    def _command_data(self, name: str, ctype: int, guild_id: int | None) -> dict[str, Any]:
        # A guild command (if synced to this guild) wins over a global one, like Discord.
        for scope in ([guild_id] if guild_id is not None else []) + [None]:
            for cmd in self.commands.get(scope, []):
                if cmd["name"] == name and cmd["type"] == ctype:
                    data: dict[str, Any] = {"id": cmd["id"], "name": name, "type": ctype}
                    if scope is not None:
                        data["guild_id"] = str(scope)
                    return data
        return {"id": str(self.snowflake()), "name": name, "type": ctype}

    def _resolve_option(
        self, opt: dict[str, Any], resolved: dict[str, Any], guild_id: int | None
    ) -> dict[str, Any]:
        opt = dict(opt)
        value = opt.get("value")
        if "type" not in opt:
            opt["type"] = {bool: 5, int: 4, float: 10, str: 3}.get(type(value), 3)
        otype = opt["type"]
        if otype in (6, 9) and value is not None and int(value) in self.users:
            uid = int(value)
            resolved.setdefault("users", {})[str(uid)] = self.users[uid]
            if guild_id is not None and (member := self._guild_member(guild_id, uid)) is not None:
                perms = self._permissions(guild_id, member["roles"])
                resolved.setdefault("members", {})[str(uid)] = {
                    **{k: v for k, v in member.items() if k != "user"},
                    "permissions": str(perms),
                }
        if otype in (7, 9) and value is not None and int(value) in self.channels:
            ch = self.channels[int(value)]
            resolved.setdefault("channels", {})[str(value)] = {
                "id": ch["id"],
                "name": ch.get("name", ""),
                "type": ch["type"],
                "permissions": str(DEFAULT_MEMBER_PERMISSIONS),
                "parent_id": None,
            }
        if otype in (8, 9) and value is not None and guild_id is not None:
            for role in self.guilds[guild_id]["roles"]:
                if role["id"] == str(value):
                    resolved.setdefault("roles", {})[role["id"]] = role
        if otype in (6, 7, 8, 9, 11) and value is not None:
            opt["value"] = str(value)
        return opt

    def slash_command(
        self,
        name: str,
        options: list[dict[str, Any]] | dict[str, Any] | None = None,
        *,
        user_id: int,
        guild_id: int | None,
        channel_id: int,
        attachments: dict[str, dict[str, Any]] | None = None,
        subcommand: list[str] | None = None,
        **invoker: Unpack[Invoker],
    ) -> dict[str, Any]:
        """An INTERACTION_CREATE payload for /name (type 2, data.type 1).

        `options`: [{"name", "value"[, "type"]}] (type inferred from the value when
        missing) or a plain {name: value} dict. `attachments`: {option name:
        attachment dict from add_attachment()}. `subcommand`: ["group", "sub"] or
        ["sub"]. `permissions` defaults to what the member's roles grant.
        """
        resolved: dict[str, Any] = {}
        if isinstance(options, dict):
            options = [{"name": k, "value": v} for k, v in options.items()]
        opts = [self._resolve_option(o, resolved, guild_id) for o in options or []]
        for opt_name, att in (attachments or {}).items():
            opts.append({"name": opt_name, "type": 11, "value": str(att["id"])})
            resolved.setdefault("attachments", {})[str(att["id"])] = att
        for sub in reversed(subcommand or []):
            kind = 1 if not opts or opts[0].get("type") not in (1, 2) else 2
            opts = [{"name": sub, "type": kind, "options": opts}]
        data = self._command_data(name, 1, guild_id)
        if opts:
            data["options"] = opts
        if resolved:
            data["resolved"] = resolved
        return self._envelope(
            2, data, user_id=user_id, guild_id=guild_id, channel_id=channel_id, **invoker
        )

    def autocomplete(
        self,
        name: str,
        options: list[dict[str, Any]],
        *,
        focused: str,
        user_id: int,
        guild_id: int | None,
        channel_id: int,
    ) -> dict[str, Any]:
        """An autocomplete (type 4) payload; `focused` names the option being typed."""
        opts = [
            {**o, "type": o.get("type", 3), **({"focused": True} if o["name"] == focused else {})}
            for o in options
        ]
        data = self._command_data(name, 1, guild_id)
        data["options"] = opts
        return self._envelope(4, data, user_id=user_id, guild_id=guild_id, channel_id=channel_id)

    def context_menu(
        self,
        name: str,
        target_message: dict[str, Any],
        *,
        user_id: int,
        guild_id: int | None,
        channel_id: int,
        **invoker: Unpack[Invoker],
    ) -> dict[str, Any]:
        """A message context menu command (type 2, data.type 3, resolved.messages)."""
        data = self._command_data(name, 3, guild_id)
        data["target_id"] = str(target_message["id"])
        data["resolved"] = {"messages": {str(target_message["id"]): self._public(target_message)}}
        return self._envelope(
            2, data, user_id=user_id, guild_id=guild_id, channel_id=channel_id, **invoker
        )

    def component_interaction(
        self,
        custom_id: str,
        *,
        message: dict[str, Any],
        user_id: int,
        guild_id: int | None,
        channel_id: int,
        component_type: int = 2,
        values: list[str] | None = None,
    ) -> dict[str, Any]:
        """A button (2) or select (3, 5-8; pass `values`) press on `message`."""
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": component_type}
        if component_type != 2:
            data["values"] = list(values or [])
        return self._envelope(
            3, data, user_id=user_id, guild_id=guild_id, channel_id=channel_id, message=message
        )

    def modal_submit(
        self,
        custom_id: str,
        values: dict[str, str | list[str]],
        *,
        user_id: int,
        guild_id: int | None,
        channel_id: int,
        message: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A modal submit (type 5). `values`: {input custom_id: text, or list for selects}."""
        rows: list[dict[str, Any]] = []
        for cid, value in values.items():
            if isinstance(value, list):
                rows.append(
                    {
                        "type": 18,
                        "id": len(rows) + 1,
                        "component": {"type": 3, "custom_id": cid, "values": value},
                    }
                )
            else:
                rows.append(
                    {
                        "type": 1,
                        "id": len(rows) + 1,
                        "components": [{"type": 4, "custom_id": cid, "value": value}],
                    }
                )
        data = {"custom_id": custom_id, "components": rows}
        return self._envelope(
            5, data, user_id=user_id, guild_id=guild_id, channel_id=channel_id, message=message
        )

    def make_message(
        self,
        channel_id: int,
        *,
        author_id: int,
        content: str = "",
        attachments: Sequence[dict[str, Any]] = (),
        guild_id: int | None = None,
        reference_message_id: int | None = None,
        mentions: Sequence[int] = (),
        bot_author: bool = False,
        embeds: Sequence[dict[str, Any]] = (),
    ) -> dict[str, Any]:
        """Store and return a user's message as MESSAGE_CREATE carries it (not dispatched)."""
        if guild_id is None:
            guild_id = self._channel_guild(channel_id)
        if channel_id not in self.channels and guild_id is None:
            self.add_dm_channel(author_id, channel_id)
        author = dict(self._user(author_id))
        if bot_author:
            author["bot"] = True
        msg = self._new_message(
            channel_id,
            author,
            None,  # guild_id is added below, after the nonce, with the member
            content=content,
            mentions=[self._user(u) for u in mentions],
            attachments=list(attachments),
            embeds=list(embeds),
        )
        msg["nonce"] = str(self.snowflake())
        if guild_id is not None:
            msg["guild_id"] = str(guild_id)
            member = self._guild_member(guild_id, author_id)
            if member is None:
                member = self._member({"id": author_id}, self.now())
                self.guilds[guild_id]["members"].append(member)
            msg["member"] = {k: v for k, v in member.items() if k != "user"}
        if reference_message_id is not None:
            target = self.messages.get(reference_message_id)
            msg["type"] = 19
            msg["message_reference"] = {
                "type": 0,
                "message_id": str(reference_message_id),
                "channel_id": str(channel_id),
                **({"guild_id": str(guild_id)} if guild_id is not None else {}),
            }
            msg["referenced_message"] = self._public(target) if target is not None else None
        self.messages[int(msg["id"])] = msg
        return msg
