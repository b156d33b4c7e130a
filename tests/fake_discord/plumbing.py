"""HTTP plumbing: routes, the recording middleware, scripted faults, body parsing."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from aiohttp import web

from tests.fake_discord.common import (
    _REC,
    API_PREFIX,
    Recorded,
    _ApiError,
    _json_response,
    _unknown,
)


@dataclass
class _Fault:
    method: str
    pattern: re.Pattern[str]
    status: int
    body: Any
    headers: dict[str, str]
    times: int


@dataclass
class Hold:
    """A request kept waiting: recorded as it arrives (`arrived` is set and `request`
    holds it), answered only once the test sets `release`."""

    method: str
    pattern: re.Pattern[str]
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    request: Recorded | None = None


class HttpMixin:
    """Routes, the middleware that records and authorises requests, scripted faults."""

    # -- held requests -----------------------------------------------------

    def hold_next(self, method: str, path_regex: str) -> Hold:
        """Keep the next matching request waiting until the test sets `hold.release`, so
        it can look at the world at the moment Discord has it (e.g. is the edit already
        written down when the bot acknowledges it?). Released at the latest on stop()."""
        hold = Hold(method.upper(), re.compile(path_regex))
        self._holds.append(hold)
        return hold

    def _take_hold(self, method: str, path: str) -> Hold | None:
        for hold in self._holds:
            if hold.method in ("*", method) and hold.pattern.search(path):
                self._holds.remove(hold)
                self._held.append(hold)
                return hold
        return None

    def release_holds(self) -> None:
        for hold in [*self._holds, *self._held]:
            hold.release.set()

    # -- scripted faults ---------------------------------------------------

    def fail_next(
        self,
        method: str,
        path_regex: str,
        status: int,
        *,
        body: dict[str, Any] | None = None,
        times: int = 1,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next `times` matching requests with `status` instead.

        `method` is an HTTP verb or "*"; `path_regex` is re.search'ed against the
        REST path without /api/v10 (e.g. r"^/channels/\\d+/messages$") or the CDN
        path (r"^/attachments/"). For 429 the default body and headers are the ones
        discord.py retries on (Via header + retry_after 0.05).
        """
        if body is None:
            if status == 429:
                body = {
                    "message": "You are being rate limited.",
                    "retry_after": 0.05,
                    "global": False,
                }
            else:
                try:
                    phrase = HTTPStatus(status).phrase
                except ValueError:
                    phrase = "Error"
                body = {"message": f"{status}: {phrase}", "code": 0}
        if headers is None and status == 429:
            headers = {"Via": "1.1 google", "Retry-After": "1", "X-RateLimit-Scope": "user"}
        self._faults.append(
            _Fault(method.upper(), re.compile(path_regex), status, body, dict(headers or {}), times)
        )

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        for fault in self._faults:
            if fault.method in ("*", method) and fault.pattern.search(path):
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    # -- HTTP plumbing -----------------------------------------------------

    def _add_routes(self, app: web.Application) -> None:
        r = app.router
        p = API_PREFIX
        r.add_get("/gateway", self._h_gateway)
        r.add_get("/gateway/", self._h_gateway)
        r.add_get("/attachments/{channel}/{att}/{filename}", self._h_cdn)

        r.add_get(p + "/users/@me", self._h_me)
        r.add_get(p + "/users/@me/guilds", self._h_my_guilds)
        r.add_post(p + "/users/@me/channels", self._h_create_dm)
        r.add_get(p + "/users/{user}", self._h_user)
        r.add_get(p + "/oauth2/applications/@me", self._h_application)
        r.add_get(p + "/applications/@me", self._h_application)
        r.add_get(p + "/gateway", self._h_gateway_info)
        r.add_get(p + "/gateway/bot", self._h_gateway_bot)

        for prefix in (
            "/applications/{app}/commands",
            "/applications/{app}/guilds/{guild}/commands",
        ):
            r.add_get(p + prefix, self._h_commands_list)
            r.add_put(p + prefix, self._h_commands_put)
            r.add_post(p + prefix, self._h_command_post)
            r.add_get(p + prefix + "/{cmd}", self._h_command_get)
            r.add_patch(p + prefix + "/{cmd}", self._h_command_patch)
            r.add_delete(p + prefix + "/{cmd}", self._h_command_delete)

        r.add_post(p + "/interactions/{iid}/{token}/callback", self._h_callback)
        r.add_post(p + "/webhooks/{app}/{token}", self._h_followup)
        r.add_get(p + "/webhooks/{app}/{token}/messages/{mid}", self._h_webhook_get)
        r.add_patch(p + "/webhooks/{app}/{token}/messages/{mid}", self._h_webhook_patch)
        r.add_delete(p + "/webhooks/{app}/{token}/messages/{mid}", self._h_webhook_delete)

        r.add_get(p + "/channels/{channel}", self._h_channel)
        r.add_get(p + "/channels/{channel}/messages", self._h_history)
        r.add_post(p + "/channels/{channel}/messages", self._h_channel_post)
        r.add_get(p + "/channels/{channel}/messages/{mid}", self._h_channel_get)
        r.add_patch(p + "/channels/{channel}/messages/{mid}", self._h_channel_patch)
        r.add_delete(p + "/channels/{channel}/messages/{mid}", self._h_channel_delete)
        r.add_post(p + "/channels/{channel}/typing", self._h_typing)
        reaction = p + "/channels/{channel}/messages/{mid}/reactions/{emoji}/@me"
        r.add_put(reaction, self._h_reaction_put)
        r.add_delete(reaction, self._h_reaction_delete)

        r.add_get(p + "/guilds/{guild}", self._h_guild)
        r.add_get(p + "/guilds/{guild}/channels", self._h_guild_channels)
        r.add_get(p + "/guilds/{guild}/members/{user}", self._h_member)

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path.rstrip("/") == "/gateway":
            return await handler(request)
        is_rest = request.path.startswith(API_PREFIX)
        path = request.path[len(API_PREFIX) :] if is_rest else request.path
        try:
            body, files = await self._read_body(request)
        except _ApiError as exc:
            body, files, early = None, [], exc
        else:
            early = None
        rec = Recorded(
            method=request.method,
            path=path,
            query=dict(request.query),
            headers=dict(request.headers),
            json=body,
            files=files,
            at=time.monotonic(),
        )
        (self.requests if is_rest else self.cdn_requests).append(rec)
        request[_REC] = rec
        hold = self._take_hold(request.method, path)
        if hold is not None:
            hold.request = rec
            hold.arrived.set()
            await hold.release.wait()
        fault = self._take_fault(request.method, path)
        if fault is not None:
            resp: web.StreamResponse = _json_response(
                fault.body, status=fault.status, headers=fault.headers
            )
            rec.response = fault.body
        elif early is not None:
            resp = early.response()
            rec.response = early.body
        else:
            try:
                if is_rest and not self._authorised(request, path):
                    raise _ApiError(401, 0, "401: Unauthorized")
                resp = await handler(request)
            except _ApiError as exc:
                resp = exc.response()
                rec.response = exc.body
            except web.HTTPNotFound:
                rec.response = {"message": "404: Not Found", "code": 0}
                resp = _json_response(rec.response, status=404)
            except web.HTTPMethodNotAllowed:
                rec.response = {"message": "405: Method Not Allowed", "code": 0}
                resp = _json_response(rec.response, status=405)
        rec.status = resp.status
        return resp

    def _authorised(self, request: web.Request, path: str) -> bool:
        # Interaction callbacks and webhooks authenticate by the token in the URL.
        if path.startswith(("/interactions/", "/webhooks/")):
            return True
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bot "):
            return False
        return self.token is None or auth == f"Bot {self.token}"

    async def _read_body(
        self, request: web.Request
    ) -> tuple[Any, list[tuple[str, str | None, str | None, bytes]]]:
        files: list[tuple[str, str | None, str | None, bytes]] = []
        if request.content_type.startswith("multipart/"):
            payload: Any = None
            reader = await request.multipart()
            async for part in reader:
                if not hasattr(part, "read"):
                    continue
                data = bytes(await part.read(decode=False))  # type: ignore[union-attr]
                name = part.name or ""  # type: ignore[union-attr]
                filename = part.filename  # type: ignore[union-attr]
                if name == "payload_json":
                    payload = self._parse_json(data)
                elif filename is not None or name.startswith("file"):
                    files.append((name, filename, part.headers.get("Content-Type"), data))
            return payload, files
        raw = await request.read()
        if not raw:
            return None, files
        return self._parse_json(raw), files

    @staticmethod
    def _parse_json(raw: bytes) -> Any:
        try:
            return json.loads(raw)
        except ValueError:
            raise _ApiError(400, 50109, "The request body contains invalid JSON.") from None

    @staticmethod
    def _json(request: web.Request) -> Any:
        return request[_REC].json

    @staticmethod
    def _files(request: web.Request) -> list[tuple[str, str | None, str | None, bytes]]:
        return request[_REC].files

    @staticmethod
    def _ok(request: web.Request, data: Any, status: int = 200) -> web.Response:
        request[_REC].response = data
        return _json_response(data, status=status)

    @staticmethod
    def _int(request: web.Request, key: str, what: str, code: int) -> int:
        try:
            return int(request.match_info[key])
        except ValueError:
            raise _unknown(what, code) from None
