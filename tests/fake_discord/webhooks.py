"""REST routes for interactions: the callback, followups and webhook messages."""

from __future__ import annotations

import copy
import time
from typing import Any

from aiohttp import web

from tests.fake_discord.common import (
    _ALLOWED_CALLBACKS,
    _INTERACTION_FLAGS,
    FLAG_EPHEMERAL,
    FLAG_LOADING,
    InteractionState,
    _ApiError,
    _form_error,
    _iso,
    _truthy,
    _unknown,
)


class WebhooksMixin:
    """Interaction callbacks and the interaction webhook (followups, @original)."""

    # -- REST: interactions and their webhooks ---------------------------------

    async def _h_callback(self, request: web.Request) -> web.StreamResponse:
        iid = self._int(request, "iid", "interaction", 10062)
        it = self.interactions.get(iid)
        if it is None or it.token != request.match_info["token"]:
            raise _unknown("interaction", 10062)
        if it.response_type is not None:
            raise _ApiError(400, 40060, "Interaction has already been acknowledged.")
        if self.callback_deadline is not None and self.now() - it.created > self.callback_deadline:
            raise _unknown(
                "interaction", 10062
            )  # Discord forgets unanswered interactions after 3 s
        body = self._json(request)
        if not isinstance(body, dict) or "type" not in body:
            raise _form_error(["type"], "BASE_TYPE_REQUIRED", "This field is required")
        rtype = int(body["type"])
        data = body.get("data") or {}
        allowed = set(_ALLOWED_CALLBACKS.get(it.type, set()))
        if it.type == 5 and "message" not in it.payload:
            allowed -= {6, 7}
        if rtype not in allowed:
            raise _form_error(
                ["type"], "INTERACTION_RESPONSE_TYPE_INVALID", "Invalid interaction response type"
            )

        files = self._files(request)
        message: dict[str, Any] | None = None
        if rtype == 4:
            message = self._post_for(it, data, files)
            it.original_id = int(message["id"])
        elif rtype == 5:
            flags = FLAG_LOADING | (int(data.get("flags") or 0) & FLAG_EPHEMERAL)
            message = self._new_message(
                it.channel_id, self.bot_user, it.guild_id, flags=flags, allowed_mentions=None
            )
            self._tag_interaction(message, it)
            self._store(message)
            it.original_id = int(message["id"])
            it.loading = True
            self._echo("MESSAGE_CREATE", message)
        elif rtype in (6, 7):
            target = self._interaction_target(it)
            it.original_id = int(target["id"])
            if rtype == 7:
                message = self._apply_edit(target, data, files, it.size_limit)
                self._store(message)
                self._echo("MESSAGE_UPDATE", message)
        elif rtype == 9:
            for key in ("custom_id", "title", "components"):
                if not data.get(key):
                    raise _form_error(["data", key], "BASE_TYPE_REQUIRED", "This field is required")
            it.modal = data
        elif rtype == 8:
            it.choices = list(data.get("choices") or [])
            if len(it.choices) > 25:
                raise _form_error(
                    ["data", "choices"], "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length."
                )

        it.response_type = rtype
        now = time.monotonic()
        entry = {
            **body,
            "at": now,
            "after": None if it.dispatched_at is None else now - it.dispatched_at,
        }
        if files:
            entry["files"] = [(f[1], f[3]) for f in files]
        self.callbacks.setdefault(iid, []).append(entry)

        if not _truthy(request.query.get("with_response")):
            return web.Response(status=204)
        result: dict[str, Any] = {"interaction": {"id": str(it.id), "type": it.type}}
        if it.original_id is not None and rtype in (4, 5, 7):
            shown = self.messages[it.original_id]
            result["interaction"]["response_message_id"] = str(it.original_id)
            result["interaction"]["response_message_loading"] = rtype == 5
            result["interaction"]["response_message_ephemeral"] = bool(
                shown["flags"] & FLAG_EPHEMERAL
            )
            result["resource"] = {"type": rtype, "message": self._public(shown)}
        return self._ok(request, result)

    def _post_for(
        self,
        it: InteractionState,
        payload: Any,
        files: list[tuple[str, str | None, str | None, bytes]],
    ) -> dict[str, Any]:
        """A new message posted with the interaction's token: built, stored, echoed."""
        msg = self._build_message(
            channel_id=it.channel_id,
            payload=payload,
            files=files,
            limit=it.size_limit,
            allowed_flags=_INTERACTION_FLAGS,
            interaction=it,
        )
        self._store(msg)
        self._echo("MESSAGE_CREATE", msg)
        return msg

    def _interaction_target(self, it: InteractionState) -> dict[str, Any]:
        raw = it.payload.get("message")
        if raw is None:
            raise _form_error(
                ["type"], "INTERACTION_RESPONSE_TYPE_INVALID", "Invalid interaction response type"
            )
        stored = self.messages.get(int(raw["id"]))
        if stored is None:  # a test-built message the stand-in had not seen: adopt it
            stored = self._store({"flags": 0, "allowed_mentions": None, **copy.deepcopy(raw)})
        return stored

    def _webhook_interaction(self, request: web.Request) -> InteractionState:
        if self._int(request, "app", "Webhook", 10015) != self.application_id:
            raise _unknown("Webhook", 10015)
        token = request.match_info["token"]
        it = next((i for i in self.interactions.values() if i.token == token), None)
        if it is None or self.now() - it.created > self.token_lifetime:
            raise _ApiError(401, 50027, "Invalid Webhook Token")
        return it

    def _webhook_message(self, request: web.Request, it: InteractionState) -> dict[str, Any]:
        raw = request.match_info["mid"]
        if raw == "@original":
            if it.response_type is None:
                raise _unknown("Webhook", 10015)
            mid = it.original_id
        else:
            mid = int(raw) if raw.isdigit() else None
            if mid not in it.followup_ids and mid != it.original_id:
                mid = None
        msg = self.messages.get(mid) if mid is not None else None
        if msg is None:
            raise _unknown("Message", 10008)
        return msg

    async def _h_followup(self, request: web.Request) -> web.StreamResponse:
        it = self._webhook_interaction(request)
        if it.response_type is None:
            raise _unknown("Webhook", 10015)  # followups need an acknowledged interaction
        payload = self._json(request)
        files = self._files(request)
        if it.loading and it.original_id in self.messages:
            # Discord: the first followup after a "thinking" defer replaces the loading
            # message, keeping the defer's ephemerality (the followup's flag is ignored).
            loading = self.messages[it.original_id]
            fresh = self._build_message(
                channel_id=it.channel_id,
                payload=payload,
                files=files,
                limit=it.size_limit,
                allowed_flags=_INTERACTION_FLAGS & ~FLAG_EPHEMERAL,
                interaction=it,
                ephemeral=bool(loading["flags"] & FLAG_EPHEMERAL),
            )
            fresh.update(
                id=loading["id"], timestamp=loading["timestamp"], edited_timestamp=_iso(self.now())
            )
            msg = self._store(fresh)
            it.loading = False
            self._echo("MESSAGE_UPDATE", msg)
        else:
            msg = self._post_for(it, payload, files)
        it.followup_ids.append(int(msg["id"]))
        if not _truthy(request.query.get("wait")):
            return web.Response(status=204)
        return self._ok(request, self._public(msg))

    async def _h_webhook_get(self, request: web.Request) -> web.Response:
        it = self._webhook_interaction(request)
        return self._ok(request, self._public(self._webhook_message(request, it)))

    async def _h_webhook_patch(self, request: web.Request) -> web.Response:
        it = self._webhook_interaction(request)
        msg = self._webhook_message(request, it)
        replacing_loading = it.loading and int(msg["id"]) == it.original_id
        new = self._apply_edit(
            msg, self._json(request), self._files(request), it.size_limit, mark_edited=True
        )
        if replacing_loading:
            new["flags"] &= ~FLAG_LOADING
            it.loading = False
        return self._publish(request, "MESSAGE_UPDATE", new)

    async def _h_webhook_delete(self, request: web.Request) -> web.Response:
        it = self._webhook_interaction(request)
        msg = self._webhook_message(request, it)
        self._delete(msg)
        if int(msg["id"]) == it.original_id:
            it.loading = False
        return web.Response(status=204)
