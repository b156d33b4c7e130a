"""A local stand-in for Discord's REST API, gateway and attachment CDN.

One aiohttp server on 127.0.0.1 serves:

* REST under ``/api/v10/...`` (the routes discord.py 2.7 uses for a bot that answers
  slash commands, context menus, components and modals, and posts channel messages),
* the gateway websocket at ``/gateway`` (HELLO, IDENTIFY -> READY + GUILD_CREATE,
  heartbeats, RESUME, scripted disconnects),
* a CDN at ``/attachments/<channel>/<id>/<filename>?ex=..&is=..&hm=..`` with signed,
  expiring URLs like the real one.

Tests drive the bot with real gateway dispatches (``send_interaction``, ``dispatch``)
and then inspect what it did (``requests``, ``messages``, ``callbacks``,
``original_response`` ...). discord.py itself is pointed here by ``patch_discord()``
(in-process) or ``point_discord_at()`` / ``write_sitecustomize()`` (subprocess).

Minimal use::

    async with FakeDiscord() as fake, fake.running(client):   # see running()
        ...

Behaviour mirrors Discord where a bot could get it wrong: one callback per
interaction (40060), a 3 s deadline for it (10062), 15-minute interaction tokens
(50027), the first followup after a "thinking" defer replacing the loading
message, ephemeral messages invisible to channel endpoints, message limits (2000
characters, 10 embeds / 6000 embed characters, 10 files, upload size), content
stripped from MESSAGE_CREATE without the MESSAGE_CONTENT intent.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import hmac
import inspect
import io
import json
import logging
import mimetypes
import os
import re
import secrets
import textwrap
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from aiohttp import WSMsgType, web

log = logging.getLogger("fake_discord")

API_PREFIX = "/api/v10"
DISCORD_EPOCH_MS = 1420070400000
TOKEN_LIFETIME_S = 15 * 60
CALLBACK_DEADLINE_S = 3.0
CDN_URL_LIFETIME_S = 24 * 60 * 60
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024

# Environment variables read by point_discord_at_from_env() / write_sitecustomize().
ENV_REST_BASE = "FAKE_DISCORD_REST_BASE"
ENV_GATEWAY_URL = "FAKE_DISCORD_GATEWAY_URL"
ENV_CDN_BASE = "FAKE_DISCORD_CDN_BASE"

# Permission bits (https://discord.com/developers/docs/topics/permissions).
ADD_REACTIONS = 1 << 6
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
MANAGE_MESSAGES = 1 << 13
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
USE_EXTERNAL_EMOJIS = 1 << 18
USE_APPLICATION_COMMANDS = 1 << 31
ADMINISTRATOR = 1 << 3
DEFAULT_MEMBER_PERMISSIONS = (
    ADD_REACTIONS
    | VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | USE_EXTERNAL_EMOJIS
    | USE_APPLICATION_COMMANDS
)
BOT_PERMISSIONS = DEFAULT_MEMBER_PERMISSIONS | MANAGE_MESSAGES
ALL_PERMISSIONS = (1 << 53) - 1

# Gateway intents that matter to what the stand-in sends.
INTENT_GUILD_MEMBERS = 1 << 1
INTENT_GUILD_PRESENCES = 1 << 8
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_DIRECT_MESSAGES = 1 << 12
INTENT_MESSAGE_CONTENT = 1 << 15
PRIVILEGED_INTENTS = INTENT_GUILD_MEMBERS | INTENT_GUILD_PRESENCES | INTENT_MESSAGE_CONTENT

# Message flags.
FLAG_SUPPRESS_EMBEDS = 1 << 2
FLAG_EPHEMERAL = 1 << 6
FLAG_LOADING = 1 << 7
FLAG_SUPPRESS_NOTIFICATIONS = 1 << 12
FLAG_VOICE_MESSAGE = 1 << 13
FLAG_COMPONENTS_V2 = 1 << 15
_CHANNEL_FLAGS = (
    FLAG_SUPPRESS_EMBEDS | FLAG_SUPPRESS_NOTIFICATIONS | FLAG_VOICE_MESSAGE | FLAG_COMPONENTS_V2
)
_INTERACTION_FLAGS = _CHANNEL_FLAGS | FLAG_EPHEMERAL

# Which callback types Discord accepts for each interaction type.
_ALLOWED_CALLBACKS = {
    1: {1},  # ping -> pong
    2: {4, 5, 9},  # application command
    3: {4, 5, 6, 7, 9},  # component
    4: {8},  # autocomplete
    5: {4, 5, 6, 7},  # modal submit (6/7 only if it came from a message)
}

_EMBED_LIMITS = {"title": 256, "description": 4096}
_CMD_NAME_RE = re.compile(r"^[-_'\w]{1,32}$")


# ---------------------------------------------------------------------------
# Pointing discord.py at the stand-in
# ---------------------------------------------------------------------------


def _cdn_base_from(rest_base: str) -> str:
    parts = urlsplit(rest_base)
    return f"{parts.scheme}://{parts.netloc}"


def point_discord_at(rest_base: str, gateway_url: str, cdn_base: str | None = None) -> None:
    """Point discord.py's REST, gateway and asset bases at a stand-in.

    Safe to call at import time (e.g. from a sitecustomize in a bot subprocess):
    it only imports discord and assigns three class attributes.
    """
    import discord.asset
    import discord.gateway
    import discord.http
    import yarl

    discord.http.Route.BASE = rest_base.rstrip("/")
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)
    discord.asset.Asset.BASE = (cdn_base or _cdn_base_from(rest_base)).rstrip("/")


apply_patch = point_discord_at  # the name a sitecustomize-style launcher may expect


def point_discord_at_from_env() -> bool:
    """Apply point_discord_at() from FAKE_DISCORD_* environment variables, if set."""
    rest = os.environ.get(ENV_REST_BASE)
    gateway = os.environ.get(ENV_GATEWAY_URL)
    if not rest or not gateway:
        return False
    point_discord_at(rest, gateway, os.environ.get(ENV_CDN_BASE))
    return True


_SITECUSTOMIZE = textwrap.dedent(
    f'''\
    # Written by tests/fake_discord.py: points discord.py at a local stand-in.
    import os as _os

    def _fake_discord_patch():
        rest = _os.environ.get("{ENV_REST_BASE}")
        gateway = _os.environ.get("{ENV_GATEWAY_URL}")
        if not rest or not gateway:
            return
        from urllib.parse import urlsplit
        import yarl
        import discord.asset, discord.gateway, discord.http
        parts = urlsplit(rest)
        discord.http.Route.BASE = rest.rstrip("/")
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway)
        discord.asset.Asset.BASE = _os.environ.get(
            "{ENV_CDN_BASE}", f"{{parts.scheme}}://{{parts.netloc}}"
        )

    _fake_discord_patch()
    '''
)


def write_sitecustomize(directory: str | os.PathLike[str]) -> Path:
    """Write a self-contained sitecustomize.py into `directory`.

    Put the directory on PYTHONPATH of a subprocess together with
    FakeDiscord.subprocess_env() and discord.py in that process talks to the stand-in.
    """
    path = Path(directory) / "sitecustomize.py"
    path.write_text(_SITECUSTOMIZE)
    return path


# ---------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------


@dataclass
class Recorded:
    """One HTTP request the stand-in received (REST or CDN)."""

    method: str
    path: str  # REST: without the /api/v10 prefix; CDN: the full path
    query: dict[str, str]
    headers: dict[str, str]
    json: Any  # parsed JSON body, or payload_json for multipart; None if no body
    files: list[tuple[str, str | None, str | None, bytes]]  # (field, filename, type, data)
    at: float  # time.monotonic() when received
    status: int = 0  # the status answered
    response: Any = None  # the JSON answered, if any

    def __repr__(self) -> str:
        return f"<Recorded {self.method} {self.path} -> {self.status}>"


@dataclass
class _Fault:
    method: str
    pattern: re.Pattern[str]
    status: int
    body: Any
    headers: dict[str, str]
    times: int


@dataclass
class InteractionState:
    """What the stand-in knows about one interaction it issued."""

    id: int
    token: str
    type: int
    payload: dict[str, Any]
    channel_id: int
    guild_id: int | None
    created: float  # fake clock (seconds) when issued / dispatched
    dispatched_at: float | None = None  # time.monotonic() of the dispatch
    response_type: int | None = None
    original_id: int | None = None
    loading: bool = False  # a type 5 defer whose loading message is still showing
    followup_ids: list[int] = field(default_factory=list)
    modal: dict[str, Any] | None = None
    choices: list[dict[str, Any]] | None = None

    @property
    def size_limit(self) -> int:
        return int(self.payload.get("attachment_size_limit", DEFAULT_UPLOAD_LIMIT))


@dataclass
class _Session:
    id: str
    intents: int
    shard: list[int] | None
    seq: int = 0


@dataclass(eq=False)  # identity semantics: kept in a set
class _Conn:
    ws: web.WebSocketResponse
    number: int
    query: dict[str, str]
    session: _Session | None = None
    ready: bool = False
    compressor: Any = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


_REC = web.RequestKey("rec", Recorded)


class _ApiError(Exception):
    """Raised inside handlers; turned into Discord's JSON error shape."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        errors: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.body: dict[str, Any] = {"message": message, "code": code}
        if errors:
            self.body["errors"] = errors
        self.headers = headers or {}

    def response(self) -> web.Response:
        return _json_response(self.body, status=self.status, headers=self.headers)


def _form_error(path: Sequence[str | int], code: str, message: str) -> _ApiError:
    """400 Invalid Form Body with Discord's nested `errors` object."""
    errors: dict[str, Any] = {"_errors": [{"code": code, "message": message}]}
    for part in reversed(list(path)):
        errors = {str(part): errors}
    return _ApiError(400, 50035, "Invalid Form Body", errors)


def _unknown(what: str, code: int) -> _ApiError:
    return _ApiError(404, code, f"Unknown {what}")


def _json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """JSON the way Discord sends it: discord.py only parses an exact application/json."""
    return web.Response(
        body=json.dumps(data).encode(),
        status=status,
        headers={**(headers or {}), "Content-Type": "application/json"},
    )


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def _sanitize_filename(name: str) -> str:
    # Discord replaces spaces and most punctuation in uploaded file names.
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", name.strip()) or "unknown"
    return cleaned[:1024]


def _image_info(data: bytes) -> tuple[int, int, str | None] | None:
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as img:
            return img.width, img.height, Image.MIME.get(img.format or "")
    except Exception:  # not an image (or Pillow missing): no width/height, like Discord
        return None


def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true", "yes")


# ---------------------------------------------------------------------------
# The stand-in
# ---------------------------------------------------------------------------


class FakeDiscord:
    """Discord's REST API, gateway and CDN on 127.0.0.1, for one bot."""

    def __init__(
        self, *, bot_user_id: int = 1000, application_id: int = 1000, bot_name: str = "Kontext"
    ) -> None:
        self.bot_user_id = bot_user_id
        self.application_id = application_id
        self.bot_name = bot_name

        # Knobs tests may change.
        self.token: str | None = None  # when set, other bot tokens get 401 / close 4004
        self.callback_deadline: float | None = CALLBACK_DEADLINE_S
        self.token_lifetime: float = TOKEN_LIFETIME_S
        self.heartbeat_interval_ms: int = 41250
        self.allowed_privileged_intents: int = PRIVILEGED_INTENTS
        self.cdn_require_signature: bool = True
        self.echo_bot_messages: bool = True  # bot's own messages come back as MESSAGE_CREATE
        self.compress_gateway: bool = False  # True: honour ?compress=zlib-stream
        # Wall clock (seconds) used for token expiry, deadlines, snowflakes, CDN URLs.
        self.clock: Callable[[], float] = time.time
        self._skew = 0.0

        # World.
        self.users: dict[int, dict[str, Any]] = {}
        self.guilds: dict[int, dict[str, Any]] = {}
        self.channels: dict[int, dict[str, Any]] = {}
        self.guild_upload_limits: dict[int, int] = {}
        self.commands: dict[int | None, list[dict[str, Any]]] = {None: []}  # None = global

        # What happened.
        self.requests: list[Recorded] = []
        self.cdn_requests: list[Recorded] = []
        self.messages: dict[int, dict[str, Any]] = {}
        self.deleted_messages: dict[int, dict[str, Any]] = {}
        self.callbacks: dict[int, list[dict[str, Any]]] = {}
        self.interactions: dict[int, InteractionState] = {}
        self.sent_gateway: list[dict[str, Any]] = []
        self.received_gateway: list[dict[str, Any]] = []
        self.dropped_gateway: list[dict[str, Any]] = []  # dispatches the intents filtered out
        self.gateway_connections: list[dict[str, Any]] = []
        self.identifies: list[dict[str, Any]] = []

        self._blobs: dict[int, tuple[bytes, str | None, str]] = {}  # id -> data, type, name
        self._faults: list[_Fault] = []
        self._secret = secrets.token_bytes(16)
        self._last_snowflake = 0
        self._sessions: dict[str, _Session] = {}
        self._conns: set[_Conn] = set()
        self._conn: _Conn | None = None  # the identified / resumed connection
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None
        self.port: int = 0

        self.bot_user: dict[str, Any] = self.add_user(bot_user_id, bot_name, bot=True)

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(middlewares=[self._middleware], client_max_size=1024**3)
        self._add_routes(app)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        pending = list(self._tasks)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for conn in list(self._conns):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.ws.close(code=1001), 2)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def rest_base(self) -> str:
        return f"http://127.0.0.1:{self.port}{API_PREFIX}"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    @property
    def cdn_host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def cdn_base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def subprocess_env(self) -> dict[str, str]:
        """Environment for a bot subprocess (see write_sitecustomize)."""
        return {
            ENV_REST_BASE: self.rest_base,
            ENV_GATEWAY_URL: self.gateway_url,
            ENV_CDN_BASE: self.cdn_base,
        }

    @contextlib.contextmanager
    def patch_discord(self) -> Iterator[FakeDiscord]:
        """Point discord.py at this stand-in; restore the real addresses on exit."""
        if not self.port:
            raise RuntimeError("start() the FakeDiscord before patch_discord()")
        import discord.asset
        import discord.gateway
        import discord.http

        saved = (
            discord.http.Route.BASE,
            discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY,
            discord.asset.Asset.BASE,
        )
        point_discord_at(self.rest_base, self.gateway_url, self.cdn_base)
        try:
            yield self
        finally:
            (
                discord.http.Route.BASE,
                discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY,
                discord.asset.Asset.BASE,
            ) = saved

    @contextlib.asynccontextmanager
    async def running(
        self,
        client: Any,
        token: str = "fake-bot-token",  # noqa: S107 - the stand-in accepts any token
        *,
        timeout: float = 10.0,  # noqa: ASYNC109 - one deadline for the whole start-up
    ) -> AsyncIterator[Any]:
        """Log `client` in, connect it, wait until it is ready; close it on exit.

        Patches discord.py for the duration. `client` should be built with a small
        guild_ready_timeout (e.g. 0.05) or on_ready takes 2 s.
        """
        with self.patch_discord():
            task: asyncio.Task[None] | None = None
            try:
                await client.login(token)
                task = asyncio.create_task(
                    client.connect(reconnect=True), name="fake-discord-client"
                )
                # Whichever comes first: ready, or connect() failing (e.g. close 4014).
                ready = asyncio.ensure_future(client.wait_until_ready())
                done, _ = await asyncio.wait(
                    {ready, task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if ready not in done:
                    ready.cancel()
                    if task in done:
                        task.result()  # raises connect()'s error
                    raise AssertionError(f"client not ready after {timeout}s")
                yield client
            finally:
                await client.close()
                if task is not None:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await asyncio.wait_for(task, timeout=5)

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

    # -- attachments / CDN -------------------------------------------------

    def _sign(self, channel_id: int, att_id: int, filename: str) -> str:
        issued = int(self.now())
        expires = issued + CDN_URL_LIFETIME_S
        digest = hmac.new(
            self._secret, f"{att_id}:{expires:x}:{issued:x}".encode(), hashlib.sha256
        ).hexdigest()
        path = f"/attachments/{channel_id}/{att_id}/{quote(filename)}"
        return f"{self.cdn_base}{path}?ex={expires:x}&is={issued:x}&hm={digest}&"

    def _store_blob(
        self,
        data: bytes,
        filename: str,
        content_type: str | None,
        *,
        channel_id: int,
        width: int | None = None,
        height: int | None = None,
        size: int | None = None,
        description: str | None = None,
        ephemeral: bool = False,
    ) -> dict[str, Any]:
        att_id = self.snowflake()
        name = _sanitize_filename(filename)
        guessed = content_type or mimetypes.guess_type(name)[0]
        if width is None or height is None:
            info = _image_info(data) if guessed is None or guessed.startswith("image/") else None
            if info is not None:
                width = width if width is not None else info[0]
                height = height if height is not None else info[1]
                guessed = guessed or info[2]
        self._blobs[att_id] = (data, guessed, name)
        url = self._sign(channel_id, att_id, name)
        att: dict[str, Any] = {
            "id": str(att_id),
            "filename": name,
            "size": len(data) if size is None else size,
            "url": url,
            "proxy_url": url,
            "content_type": guessed,
            "width": width,
            "height": height,
            "flags": 0,
        }
        if description is not None:
            att["description"] = description
        if ephemeral:
            att["ephemeral"] = True
        return att

    def add_attachment(
        self,
        data: bytes,
        filename: str,
        content_type: str | None,
        *,
        width: int | None = None,
        height: int | None = None,
        channel_id: int = 0,
        size: int | None = None,
    ) -> dict[str, Any]:
        """Store bytes on the CDN; return the attachment object a user upload would have.

        width/height default to what Pillow reads (None for non-images). `size`
        overrides the reported size (to test limits without big buffers).
        """
        return self._store_blob(
            data,
            filename,
            content_type,
            channel_id=channel_id,
            width=width,
            height=height,
            size=size,
        )

    def attachment_bytes(self, attachment: dict[str, Any]) -> bytes:
        """The bytes behind an attachment object (uploaded by the bot or added by a test)."""
        return self._blobs[int(attachment["id"])][0]

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
            "team": None,
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

    # -- REST: application commands -------------------------------------------

    def _command_scope(self, request: web.Request) -> int | None:
        if self._int(request, "app", "Application", 10002) != self.application_id:
            raise _unknown("Application", 10002)
        if "guild" not in request.match_info:
            return None
        gid = self._int(request, "guild", "Guild", 10004)
        if gid not in self.guilds:
            raise _ApiError(403, 50001, "Missing Access")
        return gid

    def _validate_command(self, cmd: Any, index: int | None) -> None:
        where: list[str | int] = [] if index is None else [index]
        if not isinstance(cmd, dict) or not isinstance(cmd.get("name"), str):
            raise _form_error([*where, "name"], "BASE_TYPE_REQUIRED", "This field is required")
        ctype = int(cmd.get("type", 1))
        name, desc = cmd["name"], cmd.get("description", "")
        if ctype == 1:
            if not _CMD_NAME_RE.match(name) or name != name.lower():
                raise _form_error(
                    [*where, "name"], "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid"
                )
            if not 1 <= len(desc or "") <= 100:
                raise _form_error(
                    [*where, "description"],
                    "BASE_TYPE_BAD_LENGTH",
                    "Must be between 1 and 100 in length.",
                )
        else:
            if not 1 <= len(name) <= 32:
                raise _form_error(
                    [*where, "name"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 32 in length."
                )
            if desc:
                raise _form_error(
                    [*where, "description"],
                    "APPLICATION_COMMAND_CONTEXT_MENU_DESCRIPTION",
                    "Context menu commands cannot have description",
                )
        self._validate_options(cmd.get("options") or [], [*where, "options"])

    def _validate_options(self, options: list[dict[str, Any]], where: list[str | int]) -> None:
        if len(options) > 25:
            raise _form_error(where, "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
        seen_optional = False
        names: set[str] = set()
        for i, opt in enumerate(options):
            name = opt.get("name", "")
            if not _CMD_NAME_RE.match(name) or name != name.lower():
                raise _form_error(
                    [*where, i, "name"],
                    "APPLICATION_COMMAND_INVALID_NAME",
                    "Command name is invalid",
                )
            if name in names:
                raise _form_error(
                    [*where, i, "name"],
                    "APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS",
                    "Option names must be unique",
                )
            names.add(name)
            if opt.get("type") in (1, 2):
                self._validate_options(opt.get("options") or [], [*where, i, "options"])
                continue
            if opt.get("required"):
                if seen_optional:
                    raise _form_error(
                        [*where, i, "required"],
                        "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                        "Required options must be placed before non-required options",
                    )
            else:
                seen_optional = True
            if len(opt.get("choices") or []) > 25:
                raise _form_error(
                    [*where, i, "choices"], "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length."
                )

    def _store_command(
        self, scope: int | None, cmd: dict[str, Any], existing: dict[str, Any] | None
    ) -> dict[str, Any]:
        ctype = int(cmd.get("type", 1))
        stored = {
            "id": existing["id"] if existing else str(self.snowflake()),
            "application_id": str(self.application_id),
            "version": str(self.snowflake()),
            "type": ctype,
            "name": cmd["name"],
            "name_localizations": cmd.get("name_localizations"),
            "description": cmd.get("description", "") if ctype == 1 else "",
            "description_localizations": cmd.get("description_localizations"),
            "options": cmd.get("options") or [],
            "default_member_permissions": cmd.get("default_member_permissions"),
            "dm_permission": cmd.get("dm_permission", True),
            "nsfw": cmd.get("nsfw", False),
            "contexts": cmd.get("contexts"),
            "integration_types": cmd.get("integration_types", [0]),
        }
        if scope is not None:
            stored["guild_id"] = str(scope)
        return stored

    async def _h_commands_list(self, request: web.Request) -> web.Response:
        return self._ok(request, self.commands.get(self._command_scope(request), []))

    async def _h_commands_put(self, request: web.Request) -> web.Response:
        scope = self._command_scope(request)
        body = self._json(request)
        if not isinstance(body, list):
            raise _form_error([], "BASE_TYPE_ARRAY", "Must be an array.")
        if len(body) > 110:
            raise _ApiError(400, 30032, "Maximum number of application commands reached")
        old = {(c["name"], c["type"]): c for c in self.commands.get(scope, [])}
        seen: set[tuple[str, int]] = set()
        new = []
        for i, cmd in enumerate(body):
            self._validate_command(cmd, i)
            key = (cmd["name"], int(cmd.get("type", 1)))
            if key in seen:
                raise _form_error(
                    [i, "name"],
                    "APPLICATION_COMMANDS_DUPLICATE_NAME",
                    "Application command names must be unique",
                )
            seen.add(key)
            new.append(self._store_command(scope, cmd, old.get(key)))
        self.commands[scope] = new
        return self._ok(request, new)

    async def _h_command_post(self, request: web.Request) -> web.Response:
        scope = self._command_scope(request)
        cmd = self._json(request)
        self._validate_command(cmd, None)
        current = self.commands.setdefault(scope, [])
        key = (cmd["name"], int(cmd.get("type", 1)))
        existing = next((c for c in current if (c["name"], c["type"]) == key), None)
        stored = self._store_command(scope, cmd, existing)
        if existing:
            current[current.index(existing)] = stored
        else:
            current.append(stored)
        return self._ok(request, stored, 200 if existing else 201)

    def _find_command(self, request: web.Request) -> tuple[int | None, dict[str, Any]]:
        scope = self._command_scope(request)
        cid = request.match_info["cmd"]
        for cmd in self.commands.get(scope, []):
            if cmd["id"] == cid:
                return scope, cmd
        raise _unknown("application command", 10063)

    async def _h_command_get(self, request: web.Request) -> web.Response:
        return self._ok(request, self._find_command(request)[1])

    async def _h_command_patch(self, request: web.Request) -> web.Response:
        scope, cmd = self._find_command(request)
        merged = {**cmd, **(self._json(request) or {})}
        self._validate_command(merged, None)
        stored = self._store_command(scope, merged, cmd)
        current = self.commands[scope]
        current[current.index(cmd)] = stored
        return self._ok(request, stored)

    async def _h_command_delete(self, request: web.Request) -> web.Response:
        scope, cmd = self._find_command(request)
        self.commands[scope].remove(cmd)
        return web.Response(status=204)

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

        guild_id = self._channel_guild(channel_id)
        msg: dict[str, Any] = {
            "id": str(self.snowflake()),
            "channel_id": str(channel_id),
            "author": self.bot_user,
            "content": content,
            "timestamp": _iso(self.now()),
            "edited_timestamp": None,
            "tts": bool(payload.get("tts", False)),
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": attachments,
            "embeds": embeds,
            "components": components,
            "pinned": False,
            "type": 0,
            "flags": flags,
            "allowed_mentions": payload.get("allowed_mentions"),
        }
        if guild_id is not None:
            msg["guild_id"] = str(guild_id)
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

    def _echo(self, event: str, msg: dict[str, Any]) -> None:
        """Send the bot its own message events, as Discord does (not for ephemeral ones)."""
        if not self.echo_bot_messages or msg["flags"] & FLAG_EPHEMERAL or not self._conn_ready():
            return
        if event == "MESSAGE_DELETE":
            data = {"id": msg["id"], "channel_id": msg["channel_id"]}
            if "guild_id" in msg:
                data["guild_id"] = msg["guild_id"]
        else:
            data = self._gateway_message(msg)
        self._spawn(self.dispatch(event, data))

    def _gateway_message(self, msg: dict[str, Any]) -> dict[str, Any]:
        data = self._public(msg)
        if "guild_id" in msg:
            member = self._guild_member(int(msg["guild_id"]), int(msg["author"]["id"]))
            if member is not None:
                data["member"] = {k: v for k, v in member.items() if k != "user"}
        return data

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- REST: channels ------------------------------------------------------

    def _channel_id(self, request: web.Request) -> int:
        cid = self._int(request, "channel", "Channel", 10003)
        if cid not in self.channels:
            raise _unknown("Channel", 10003)
        return cid

    def _channel_message(self, request: web.Request, cid: int) -> dict[str, Any]:
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
        self._store(msg)
        self._echo("MESSAGE_CREATE", msg)
        return self._ok(request, self._public(msg))

    async def _h_channel_get(self, request: web.Request) -> web.Response:
        cid = self._channel_id(request)
        return self._ok(request, self._public(self._channel_message(request, cid)))

    async def _h_channel_patch(self, request: web.Request) -> web.Response:
        cid = self._channel_id(request)
        msg = self._channel_message(request, cid)
        if msg["author"]["id"] != str(self.bot_user_id):
            body = self._json(request) or {}
            if set(body) - {"flags"}:
                raise _ApiError(403, 50005, "Cannot edit a message authored by another user")
        new = self._apply_edit(
            msg, self._json(request), self._files(request), self._upload_limit(cid)
        )
        self._store(new)
        self._echo("MESSAGE_UPDATE", new)
        return self._ok(request, self._public(new))

    async def _h_channel_delete(self, request: web.Request) -> web.Response:
        cid = self._channel_id(request)
        msg = self._channel_message(request, cid)
        self._delete(msg)
        return web.Response(status=204)

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
        cid = self._channel_id(request)
        msg = self._channel_message(request, cid)
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
        cid = self._channel_id(request)
        msg = self._channel_message(request, cid)
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
            message = self._build_message(
                channel_id=it.channel_id,
                payload=data,
                files=files,
                limit=it.size_limit,
                allowed_flags=_INTERACTION_FLAGS,
                interaction=it,
            )
            self._store(message)
            it.original_id = int(message["id"])
            self._echo("MESSAGE_CREATE", message)
        elif rtype == 5:
            flags = FLAG_LOADING | (int(data.get("flags") or 0) & FLAG_EPHEMERAL)
            message = {
                "id": str(self.snowflake()),
                "channel_id": str(it.channel_id),
                "author": self.bot_user,
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
                "flags": flags,
                "allowed_mentions": None,
            }
            if it.guild_id is not None:
                message["guild_id"] = str(it.guild_id)
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
        self._store(new)
        self._echo("MESSAGE_UPDATE", new)
        return self._ok(request, self._public(new))

    async def _h_webhook_delete(self, request: web.Request) -> web.Response:
        it = self._webhook_interaction(request)
        msg = self._webhook_message(request, it)
        self._delete(msg)
        if int(msg["id"]) == it.original_id:
            it.loading = False
        return web.Response(status=204)

    # -- CDN -----------------------------------------------------------------

    async def _h_cdn(self, request: web.Request) -> web.Response:
        gone = web.Response(status=404, text="This content is no longer available.")
        try:
            att_id = int(request.match_info["att"])
        except ValueError:
            return gone
        blob = self._blobs.get(att_id)
        if blob is None or unquote(request.match_info["filename"]) != blob[2]:
            return gone
        if self.cdn_require_signature:
            ex, issued, hm = (request.query.get(k, "") for k in ("ex", "is", "hm"))
            want = hmac.new(
                self._secret, f"{att_id}:{ex}:{issued}".encode(), hashlib.sha256
            ).hexdigest()
            try:
                expired = int(ex, 16) < self.now()
            except ValueError:
                return gone
            if not hmac.compare_digest(want, hm) or expired:
                return gone
        data, content_type, _ = blob
        return web.Response(body=data, content_type=content_type or "application/octet-stream")

    # -- gateway -------------------------------------------------------------

    async def _h_gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0, autoping=True)
        await ws.prepare(request)
        conn = _Conn(ws=ws, number=len(self.gateway_connections) + 1, query=dict(request.query))
        if self.compress_gateway and request.query.get("compress") == "zlib-stream":
            conn.compressor = zlib.compressobj()
        self._conns.add(conn)
        self.gateway_connections.append(
            {"number": conn.number, "query": conn.query, "at": time.monotonic()}
        )
        try:
            await self._send(
                conn,
                {
                    "op": 10,
                    "d": {"heartbeat_interval": self.heartbeat_interval_ms},
                    "s": None,
                    "t": None,
                },
            )
            async for msg in ws:
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    break
                raw = msg.data if msg.type == WSMsgType.TEXT else msg.data.decode()
                try:
                    frame = json.loads(raw)
                except ValueError:
                    await ws.close(code=4002, message=b"Error while decoding payload.")
                    break
                self.received_gateway.append(frame)
                await self._on_frame(conn, frame)
        finally:
            self._conns.discard(conn)
            if self._conn is conn:
                self._conn = None
        return ws

    async def _send(self, conn: _Conn, frame: dict[str, Any]) -> None:
        self.sent_gateway.append(frame)
        text = json.dumps(frame)
        async with conn.lock:
            if conn.compressor is not None:
                data = conn.compressor.compress(text.encode()) + conn.compressor.flush(
                    zlib.Z_SYNC_FLUSH
                )
                await conn.ws.send_bytes(data)
            else:
                await conn.ws.send_str(text)

    async def _on_frame(self, conn: _Conn, frame: dict[str, Any]) -> None:
        op, d = frame.get("op"), frame.get("d")
        if op == 1:
            await self._send(conn, {"op": 11, "d": None, "s": None, "t": None})
        elif op == 2:
            await self._identify(conn, d or {})
        elif op == 6:
            await self._resume(conn, d or {})
        elif op == 8 and conn.session is not None:
            await self._member_chunk(conn, d or {})
        # op 3 (presence) and 4 (voice state) are recorded in received_gateway only.

    async def _identify(self, conn: _Conn, d: dict[str, Any]) -> None:
        self.identifies.append(d)
        if self.token is not None and d.get("token") != self.token:
            await conn.ws.close(code=4004, message=b"Authentication failed.")
            return
        if "intents" not in d:
            await conn.ws.close(code=4013, message=b"Invalid intent(s).")
            return
        intents = int(d["intents"])
        if intents & PRIVILEGED_INTENTS & ~self.allowed_privileged_intents:
            await conn.ws.close(code=4014, message=b"Disallowed intent(s).")
            return
        session = _Session(id=secrets.token_hex(16), intents=intents, shard=d.get("shard"))
        self._sessions[session.id] = session
        conn.session = session
        ready: dict[str, Any] = {
            "v": 10,
            "user": self._me(),
            "guilds": [{"id": str(g), "unavailable": True} for g in self._shard_guilds(session)],
            "session_id": session.id,
            "resume_gateway_url": self.gateway_url,
            "application": {"id": str(self.application_id), "flags": 0},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "user_settings": {},
        }
        if session.shard is not None:
            ready["shard"] = session.shard
        await self._dispatch_on(conn, "READY", ready)
        for gid in self._shard_guilds(session):
            await self._dispatch_on(conn, "GUILD_CREATE", self._guild_create(gid, intents))
        conn.ready = True
        self._conn = conn

    def _shard_guilds(self, session: _Session) -> list[int]:
        if not session.shard:
            return list(self.guilds)
        shard_id, count = session.shard
        return [g for g in self.guilds if (g >> 22) % count == shard_id]

    def _guild_create(self, guild_id: int, intents: int) -> dict[str, Any]:
        guild = copy.deepcopy(self.guilds[guild_id])
        # Without GUILD_MEMBERS Discord only sends the bot's own member.
        if not intents & INTENT_GUILD_MEMBERS:
            guild["members"] = [
                m for m in guild["members"] if m["user"]["id"] == str(self.bot_user_id)
            ]
        bot_member = self._guild_member(guild_id, self.bot_user_id)
        guild.update(
            member_count=len(self.guilds[guild_id]["members"]),
            large=False,
            unavailable=False,
            lazy=True,
            joined_at=bot_member["joined_at"] if bot_member else _iso(self.now()),
            threads=[],
            presences=[],
            voice_states=[],
            stage_instances=[],
            guild_scheduled_events=[],
            soundboard_sounds=[],
        )
        return guild

    async def _resume(self, conn: _Conn, d: dict[str, Any]) -> None:
        session = self._sessions.get(str(d.get("session_id")))
        if session is None or (self.token is not None and d.get("token") != self.token):
            await self._send(conn, {"op": 9, "d": False, "s": None, "t": None})
            return
        conn.session = session
        conn.ready = True
        self._conn = conn
        await self._dispatch_on(conn, "RESUMED", {})

    async def _member_chunk(self, conn: _Conn, d: dict[str, Any]) -> None:
        gid = int(d.get("guild_id", 0))
        if gid not in self.guilds:
            return
        members = self.guilds[gid]["members"]
        if d.get("user_ids"):
            wanted = {str(u) for u in d["user_ids"]}
            members = [m for m in members if m["user"]["id"] in wanted]
        elif d.get("query"):
            members = [m for m in members if m["user"]["username"].startswith(d["query"])]
        chunk = {"guild_id": str(gid), "members": members, "chunk_index": 0, "chunk_count": 1}
        if d.get("nonce"):
            chunk["nonce"] = d["nonce"]
        await self._dispatch_on(conn, "GUILD_MEMBERS_CHUNK", chunk)

    async def _dispatch_on(self, conn: _Conn, event: str, data: dict[str, Any]) -> None:
        assert conn.session is not None
        conn.session.seq += 1
        await self._send(conn, {"op": 0, "t": event, "s": conn.session.seq, "d": data})

    def _conn_ready(self) -> bool:
        return self._conn is not None and self._conn.ready and not self._conn.ws.closed

    async def wait_for_ready_bot(self, timeout: float = 10) -> None:  # noqa: ASYNC109
        """Wait until a bot has identified (or resumed) and got READY + GUILD_CREATEs."""
        await self.wait_for(self._conn_ready, timeout, message="a bot to connect and identify")

    @property
    def intents(self) -> int | None:
        """The intents of the last IDENTIFY, if any."""
        return int(self.identifies[-1]["intents"]) if self.identifies else None

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Send a DISPATCH (op 0) to the connected bot, as Discord would.

        MESSAGE_* events are dropped (recorded in dropped_gateway) when the bot lacks
        the GUILD_MESSAGES / DIRECT_MESSAGES intent, and their content is emptied
        without MESSAGE_CONTENT unless the bot is mentioned, in a DM, or the author.
        """
        if not self._conn_ready():
            raise AssertionError(f"no bot connected to the gateway to receive {event}")
        conn = self._conn
        assert conn is not None and conn.session is not None
        data = copy.deepcopy(data)
        if event.startswith("MESSAGE_") and "author" in data:
            intents = conn.session.intents
            in_guild = data.get("guild_id") is not None
            needed = INTENT_GUILD_MESSAGES if in_guild else INTENT_DIRECT_MESSAGES
            if not intents & needed:
                self.dropped_gateway.append({"t": event, "d": data, "reason": "intents"})
                return
            mentioned = any(u.get("id") == str(self.bot_user_id) for u in data.get("mentions", []))
            own = data["author"].get("id") == str(self.bot_user_id)
            if in_guild and not (intents & INTENT_MESSAGE_CONTENT or mentioned or own):
                data.update(content="", embeds=[], attachments=[], components=[])
                data.pop("poll", None)
        if event == "INTERACTION_CREATE":
            self._register_interaction(data, dispatched=True)
        await self._dispatch_on(conn, event, data)

    async def send_interaction(self, payload: dict[str, Any]) -> None:
        """Dispatch INTERACTION_CREATE; the 3 s / 15 min clocks start now."""
        await self.dispatch("INTERACTION_CREATE", payload)

    async def close_gateway(self, code: int = 4000) -> None:
        """Close the bot's gateway socket (4000: it reconnects and RESUMEs)."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.ws.close(code=code)

    async def request_reconnect(self) -> None:
        """Send op 7 RECONNECT: the bot reconnects and RESUMEs."""
        if self._conn is not None:
            conn = self._conn
            await self._send(conn, {"op": 7, "d": None, "s": None, "t": None})

    async def invalidate_session(self, resumable: bool = False) -> None:
        """Send op 9: the bot identifies again from scratch (unless resumable)."""
        if self._conn is not None:
            conn = self._conn
            if not resumable and conn.session is not None:
                self._sessions.pop(conn.session.id, None)
            await self._send(conn, {"op": 9, "d": resumable, "s": None, "t": None})

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
        permissions: int | None = None,
        member_roles: Sequence[int] = (),
        locale: str = "en-US",
        app_permissions: int | None = None,
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
            2,
            data,
            user_id=user_id,
            guild_id=guild_id,
            channel_id=channel_id,
            permissions=permissions,
            member_roles=member_roles,
            locale=locale,
            app_permissions=app_permissions,
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
        permissions: int | None = None,
    ) -> dict[str, Any]:
        """A message context menu command (type 2, data.type 3, resolved.messages)."""
        data = self._command_data(name, 3, guild_id)
        data["target_id"] = str(target_message["id"])
        data["resolved"] = {"messages": {str(target_message["id"]): self._public(target_message)}}
        return self._envelope(
            2,
            data,
            user_id=user_id,
            guild_id=guild_id,
            channel_id=channel_id,
            permissions=permissions,
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
        msg: dict[str, Any] = {
            "id": str(self.snowflake()),
            "channel_id": str(channel_id),
            "author": author,
            "content": content,
            "timestamp": _iso(self.now()),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [self._user(u) for u in mentions],
            "mention_roles": [],
            "attachments": list(attachments),
            "embeds": list(embeds),
            "components": [],
            "pinned": False,
            "type": 0,
            "flags": 0,
            "nonce": str(self.snowflake()),
        }
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

    # -- inspecting what the bot did -------------------------------------------

    def interaction(self, interaction_id: int | str) -> InteractionState:
        return self.interactions[int(interaction_id)]

    def original_response(self, interaction_id: int | str) -> dict[str, Any] | None:
        """The message standing for the interaction's original response, if any.

        After a type 5 defer this is the loading message (flags & 128) until a PATCH
        of @original or the first followup replaces it.
        """
        it = self.interactions.get(int(interaction_id))
        if it is None or it.original_id is None:
            return None
        return self.messages.get(it.original_id)

    def followups(self, interaction_id: int | str) -> list[dict[str, Any]]:
        """Messages posted with the interaction's webhook (POST /webhooks/{app}/{token}).

        The first followup after a "thinking" defer is the original message itself.
        """
        it = self.interactions.get(int(interaction_id))
        if it is None:
            return []
        return [self.messages[m] for m in dict.fromkeys(it.followup_ids) if m in self.messages]

    def last_modal(self, interaction_id: int | str) -> dict[str, Any] | None:
        """The modal (callback type 9 data) the bot showed for an interaction."""
        it = self.interactions.get(int(interaction_id))
        return None if it is None else it.modal

    @staticmethod
    def components_of(message: dict[str, Any]) -> list[dict[str, Any]]:
        """All components of a message or modal, flattened (rows, labels, containers)."""
        found: list[dict[str, Any]] = []

        def walk(items: list[dict[str, Any]]) -> None:
            for comp in items:
                found.append(comp)
                walk(comp.get("components") or [])
                if isinstance(comp.get("component"), dict):
                    walk([comp["component"]])
                if isinstance(comp.get("accessory"), dict):
                    walk([comp["accessory"]])

        walk(message.get("components") or [])
        return found

    def requests_to(self, method: str, path_regex: str) -> list[Recorded]:
        """Recorded REST requests matching a method ("*" for any) and a path regex."""
        pattern = re.compile(path_regex)
        return [r for r in self.requests if method in ("*", r.method) and pattern.search(r.path)]

    async def wait_for(
        self,
        predicate: Callable[[], object],
        timeout: float = 10.0,  # noqa: ASYNC109 - a polling helper; the interface names it
        *,
        message: str | None = None,
    ) -> object:
        """Poll `predicate` (sync or async) until it returns something truthy."""
        deadline = time.monotonic() + timeout
        value: object = None
        while True:
            value = predicate()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return value
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.01)
        what = message or getattr(predicate, "__qualname__", repr(predicate))
        recent = (
            ", ".join(f"{r.method} {r.path} -> {r.status}" for r in self.requests[-8:]) or "none"
        )
        raise AssertionError(
            f"timed out after {timeout}s waiting for {what} (last value {value!r}); "
            f"last REST requests: {recent}; gateway connected: {self._conn_ready()}"
        )
