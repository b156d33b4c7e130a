"""Building, validating and editing messages: embeds, attachments, mentions."""

from __future__ import annotations

import copy
import re
from typing import Any

from tests.fake_discord.common import (
    _EMBED_LIMITS,
    FLAG_COMPONENTS_V2,
    FLAG_EPHEMERAL,
    FLAG_SUPPRESS_EMBEDS,
    InteractionState,
    _ApiError,
    _form_error,
    _iso,
)


class MessagesMixin:
    """Message bodies checked the way Discord checks them; stored messages."""

    # -- messages: building and editing ----------------------------------------

    def _check_embeds(self, embeds: Any) -> list[dict[str, Any]]:
        if not isinstance(embeds, list):
            raise _form_error(["embeds"], "BASE_TYPE_ARRAY", "Must be an array.")
        if len(embeds) > 10:
            raise _form_error(["embeds"], "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
        total = 0
        out = []
        for i, embed in enumerate(embeds):
            embed = copy.deepcopy(embed)
            embed.setdefault("type", "rich")
            for key, limit in _EMBED_LIMITS.items():
                text = embed.get(key) or ""
                total += len(text)
                if len(text) > limit:
                    raise _form_error(
                        ["embeds", i, key],
                        "BASE_TYPE_MAX_LENGTH",
                        f"Must be {limit} or fewer in length.",
                    )
            fields = embed.get("fields") or []
            if len(fields) > 25:
                raise _form_error(
                    ["embeds", i, "fields"],
                    "BASE_TYPE_MAX_LENGTH",
                    "Must be 25 or fewer in length.",
                )
            for j, fld in enumerate(fields):
                for key, limit in (("name", 256), ("value", 1024)):
                    text = str(fld.get(key) or "")
                    total += len(text)
                    if not text:
                        raise _form_error(
                            ["embeds", i, "fields", j, key],
                            "BASE_TYPE_REQUIRED",
                            "This field is required",
                        )
                    if len(text) > limit:
                        raise _form_error(
                            ["embeds", i, "fields", j, key],
                            "BASE_TYPE_MAX_LENGTH",
                            f"Must be {limit} or fewer in length.",
                        )
            for key, sub, limit in (("footer", "text", 2048), ("author", "name", 256)):
                text = (embed.get(key) or {}).get(sub) or ""
                total += len(text)
                if len(text) > limit:
                    raise _form_error(
                        ["embeds", i, key, sub],
                        "BASE_TYPE_MAX_LENGTH",
                        f"Must be {limit} or fewer in length.",
                    )
            out.append(embed)
        if total > 6000:
            raise _form_error(
                ["embeds"], "MESSAGE_EMBEDS_TOO_LONG", "Embed size exceeds maximum size of 6000"
            )
        return out

    def _resolve_attachment_urls(
        self, embeds: list[dict[str, Any]], attachments: list[dict[str, Any]]
    ) -> None:
        # "attachment://name" in an embed points at an uploaded file of that name.
        by_name = {a["filename"]: a for a in attachments}
        for embed in embeds:
            for key, sub in (
                ("image", "url"),
                ("thumbnail", "url"),
                ("footer", "icon_url"),
                ("author", "icon_url"),
            ):
                part = embed.get(key)
                if not isinstance(part, dict):
                    continue
                url = part.get(sub) or ""
                if url.startswith("attachment://") and url[13:] in by_name:
                    att = by_name[url[13:]]
                    part[sub] = att["url"]
                    prefix = "proxy_" + sub
                    part[prefix] = att["proxy_url"]
                    if key in ("image", "thumbnail"):
                        part["width"], part["height"] = att.get("width"), att.get("height")

    def _resolve_attachments(
        self,
        spec: Any,
        files: list[tuple[str, str | None, str | None, bytes]],
        *,
        channel_id: int,
        existing: list[dict[str, Any]],
        limit: int,
        ephemeral: bool,
    ) -> list[dict[str, Any]]:
        for _, _, _, data in files:
            if len(data) > limit:
                raise _ApiError(413, 40005, "Request entity too large")
        by_index: dict[int, tuple[str, str | None, str | None, bytes]] = {}
        for i, entry in enumerate(files):
            m = re.fullmatch(r"files?\[(\d+)\]", entry[0])
            by_index[int(m.group(1)) if m else i] = entry

        def upload(
            entry: tuple[str, str | None, str | None, bytes], meta: dict[str, Any]
        ) -> dict[str, Any]:
            _, filename, _, data = entry
            return self._store_blob(
                data,
                meta.get("filename") or filename or "unknown",
                None,  # discord.py always says octet-stream; Discord goes by the name
                channel_id=channel_id,
                description=meta.get("description"),
                ephemeral=ephemeral,
            )

        if spec is None:
            result = list(existing) + [upload(by_index[k], {}) for k in sorted(by_index)]
        else:
            if not isinstance(spec, list):
                raise _form_error(["attachments"], "BASE_TYPE_ARRAY", "Must be an array.")
            keep = {a["id"]: a for a in existing}
            result = []
            for i, entry in enumerate(spec):
                raw_id = str(entry.get("id", ""))
                if raw_id in keep:
                    kept = dict(keep[raw_id])
                    if "description" in entry:
                        kept["description"] = entry["description"]
                    result.append(kept)
                elif raw_id.isdigit() and int(raw_id) in by_index:
                    result.append(upload(by_index[int(raw_id)], entry))
                else:
                    raise _form_error(
                        ["attachments", i, "id"], "ATTACHMENT_NOT_FOUND", "Unknown attachment"
                    )
        if len(result) > 10:
            raise _form_error(["files"], "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
        return result

    def _mentions(
        self, content: str, allowed: dict[str, Any] | None, replied_author: str | None
    ) -> tuple[list[dict[str, Any]], list[str], bool]:
        parse = None if allowed is None else set(allowed.get("parse") or [])
        user_ids = [int(x) for x in re.findall(r"<@!?(\d+)>", content)]
        role_ids = re.findall(r"<@&(\d+)>", content)
        if parse is not None:
            listed_users = {int(u) for u in allowed.get("users") or []}  # type: ignore[union-attr]
            listed_roles = {str(r) for r in allowed.get("roles") or []}  # type: ignore[union-attr]
            user_ids = [u for u in user_ids if "users" in parse or u in listed_users]
            role_ids = [r for r in role_ids if "roles" in parse or r in listed_roles]
        if replied_author is not None and (allowed is None or allowed.get("replied_user", False)):
            user_ids.append(int(replied_author))
        everyone = ("@everyone" in content or "@here" in content) and (
            parse is None or "everyone" in parse
        )
        users = [self._user(u) for u in dict.fromkeys(user_ids)]
        return users, list(dict.fromkeys(role_ids)), everyone

    def _new_message(
        self, channel_id: int, author: dict[str, Any], guild_id: int | None, **fields: Any
    ) -> dict[str, Any]:
        """A new message with Discord's fields, empty but for `fields`; ids from the clock."""
        msg: dict[str, Any] = {
            "id": str(self.snowflake()),
            "channel_id": str(channel_id),
            "author": author,
            "content": "",
            "timestamp": _iso(self.now()),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "components": [],
            "pinned": False,
            "type": 0,
            "flags": 0,
        }
        msg.update(fields)  # known keys keep their place; new ones (nonce ...) come last
        if guild_id is not None:
            msg["guild_id"] = str(guild_id)
        return msg

    def _build_message(
        self,
        *,
        channel_id: int,
        payload: dict[str, Any],
        files: list[tuple[str, str | None, str | None, bytes]],
        limit: int,
        allowed_flags: int,
        interaction: InteractionState | None = None,
        ephemeral: bool = False,
    ) -> dict[str, Any]:
        """Validate a create-message body the way Discord does; return the new message."""
        if not isinstance(payload, dict):
            raise _ApiError(400, 50109, "The request body contains invalid JSON.")
        flags = int(payload.get("flags") or 0) & allowed_flags
        ephemeral = ephemeral or bool(flags & FLAG_EPHEMERAL)
        if ephemeral:
            flags |= FLAG_EPHEMERAL
        content = payload.get("content")
        content = "" if content is None else str(content)
        if len(content) > 2000:
            raise _form_error(
                ["content"], "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length."
            )
        embeds = self._check_embeds(payload.get("embeds") or [])
        components = payload.get("components") or []
        attachments = self._resolve_attachments(
            payload.get("attachments"),
            files,
            channel_id=channel_id,
            existing=[],
            limit=limit,
            ephemeral=ephemeral,
        )
        if flags & FLAG_COMPONENTS_V2 and (content or embeds):
            raise _form_error(
                ["content"],
                "MESSAGE_CANNOT_USE_LEGACY_FIELDS_WITH_COMPONENTS_V2",
                "The 'content' and 'embeds' fields cannot be used with IS_COMPONENTS_V2",
            )
        if not (
            content
            or embeds
            or attachments
            or components
            or payload.get("sticker_ids")
            or payload.get("poll")
        ):
            raise _ApiError(400, 50006, "Cannot send an empty message")
        self._resolve_attachment_urls(embeds, attachments)

        msg = self._new_message(
            channel_id,
            self.bot_user,
            self._channel_guild(channel_id),
            content=content,
            tts=bool(payload.get("tts", False)),
            attachments=attachments,
            embeds=embeds,
            components=components,
            flags=flags,
            allowed_mentions=payload.get("allowed_mentions"),
        )
        if payload.get("nonce") is not None:
            msg["nonce"] = payload["nonce"]
        if payload.get("poll"):
            msg["poll"] = payload["poll"]
        replied_author = None
        ref = payload.get("message_reference")
        if ref and ref.get("message_id") is not None and ref.get("type", 0) == 0:
            target = self.messages.get(int(ref["message_id"]))
            if target is None or target["flags"] & FLAG_EPHEMERAL:
                if ref.get("fail_if_not_exists", True):
                    raise _form_error(
                        ["message_reference"],
                        "MESSAGE_REFERENCE_UNKNOWN_MESSAGE",
                        "Unknown message",
                    )
            else:
                msg["type"] = 19
                msg["message_reference"] = {
                    "type": 0,
                    "message_id": target["id"],
                    "channel_id": target["channel_id"],
                    **({"guild_id": target["guild_id"]} if "guild_id" in target else {}),
                }
                msg["referenced_message"] = self._public(target)
                replied_author = target["author"]["id"]
        if interaction is not None:
            self._tag_interaction(msg, interaction)
        self._set_mentions(msg, replied_author)
        return msg

    def _set_mentions(self, msg: dict[str, Any], replied_author: str | None = None) -> None:
        if replied_author is None and "referenced_message" in msg:
            replied_author = msg["referenced_message"]["author"]["id"]
        users, roles, everyone = self._mentions(
            msg["content"], msg.get("allowed_mentions"), replied_author
        )
        msg["mentions"], msg["mention_roles"], msg["mention_everyone"] = users, roles, everyone

    def _tag_interaction(self, msg: dict[str, Any], it: InteractionState) -> None:
        # Messages created through an interaction token are webhook messages of the app.
        user = it.payload.get("user") or it.payload.get("member", {}).get("user") or self._user(0)
        data = it.payload.get("data") or {}
        msg["webhook_id"] = str(self.application_id)
        msg["application_id"] = str(self.application_id)
        owners = it.payload.get("authorizing_integration_owners", {})
        meta: dict[str, Any] = {
            "id": str(it.id),
            "type": it.type,
            "user": user,
            "authorizing_integration_owners": owners,
        }
        if it.type == 2:
            meta["name"] = data.get("name")
            meta["command_type"] = data.get("type", 1)
            msg["type"] = 23 if data.get("type", 1) in (2, 3) else 20
            msg["interaction"] = {
                "id": str(it.id),
                "type": it.type,
                "name": data.get("name"),
                "user": user,
            }
        elif "message" in it.payload:
            meta["interacted_message_id"] = it.payload["message"]["id"]
        msg["interaction_metadata"] = meta

    def _apply_edit(
        self,
        msg: dict[str, Any],
        payload: Any,
        files: list[tuple[str, str | None, str | None, bytes]],
        limit: int,
        *,
        mark_edited: bool = True,
    ) -> dict[str, Any]:
        """Apply a PATCH body to a copy of `msg`; validate; return the copy."""
        if payload is None:
            payload = {}
        if not isinstance(payload, dict):
            raise _ApiError(400, 50109, "The request body contains invalid JSON.")
        new = copy.deepcopy(msg)
        if "content" in payload:
            content = "" if payload["content"] is None else str(payload["content"])
            if len(content) > 2000:
                raise _form_error(
                    ["content"], "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length."
                )
            new["content"] = content
        if "embeds" in payload:
            new["embeds"] = self._check_embeds(payload["embeds"] or [])
        if "components" in payload:
            new["components"] = payload["components"] or []
        if "allowed_mentions" in payload:
            new["allowed_mentions"] = payload["allowed_mentions"]
        if "flags" in payload and payload["flags"] is not None:
            # Only a few flags can change on edit; ephemeral/loading stay as they are.
            editable = FLAG_SUPPRESS_EMBEDS | FLAG_COMPONENTS_V2
            new["flags"] = (new["flags"] & ~editable) | (int(payload["flags"]) & editable)
        if "attachments" in payload or files:
            new["attachments"] = self._resolve_attachments(
                payload.get("attachments"),
                files,
                channel_id=int(msg["channel_id"]),
                existing=msg["attachments"],
                limit=limit,
                ephemeral=bool(new["flags"] & FLAG_EPHEMERAL),
            )
        self._resolve_attachment_urls(new["embeds"], new["attachments"])
        if not (
            new["content"]
            or new["embeds"]
            or new["attachments"]
            or new["components"]
            or new.get("poll")
        ):
            raise _ApiError(400, 50006, "Cannot send an empty message")
        if mark_edited:
            new["edited_timestamp"] = _iso(self.now())
        self._set_mentions(new)
        return new

    @staticmethod
    def _public(msg: dict[str, Any]) -> dict[str, Any]:
        """The message as Discord returns it (without what only the stand-in keeps)."""
        out = {k: v for k, v in msg.items() if k != "allowed_mentions"}
        if "referenced_message" in out and out["referenced_message"] is not None:
            out["referenced_message"] = dict(out["referenced_message"])
            out["referenced_message"].pop("referenced_message", None)
        return out

    def _store(self, msg: dict[str, Any]) -> dict[str, Any]:
        mid = int(msg["id"])
        existed = mid in self.messages
        self.messages[mid] = msg
        channel = self.channels.get(int(msg["channel_id"]))
        if channel is not None and not existed and not msg["flags"] & FLAG_EPHEMERAL:
            channel["last_message_id"] = msg["id"]
        return msg
