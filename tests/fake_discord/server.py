"""FakeDiscord: the stand-in composed from its parts; lifecycle and inspection."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from aiohttp import web

from tests.fake_discord.cdn import CdnMixin
from tests.fake_discord.commands import CommandsMixin
from tests.fake_discord.common import (
    API_PREFIX,
    CALLBACK_DEADLINE_S,
    ENV_CDN_BASE,
    ENV_GATEWAY_URL,
    ENV_REST_BASE,
    PRIVILEGED_INTENTS,
    TOKEN_LIFETIME_S,
    InteractionState,
    Recorded,
)
from tests.fake_discord.gateway import GatewayMixin, _Conn, _Session
from tests.fake_discord.interactions import InteractionsMixin
from tests.fake_discord.messages import MessagesMixin
from tests.fake_discord.patching import point_discord_at
from tests.fake_discord.plumbing import Hold, HttpMixin, _Fault
from tests.fake_discord.rest import RestMixin
from tests.fake_discord.state import StateMixin
from tests.fake_discord.webhooks import WebhooksMixin


class FakeDiscord(
    StateMixin,
    CdnMixin,
    HttpMixin,
    RestMixin,
    CommandsMixin,
    MessagesMixin,
    WebhooksMixin,
    GatewayMixin,
    InteractionsMixin,
):
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
        # The application's team (`set_team`); None: the application has a single owner.
        self.team: dict[str, Any] | None = None
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
        self._holds: list[Hold] = []  # waiting for their request
        self._held: list[Hold] = []  # their request arrived
        self._secret = secrets.token_bytes(16)
        self._last_snowflake = 0
        self._sessions: dict[str, _Session] = {}
        self._conns: set[_Conn] = set()
        self._conn: _Conn | None = None  # the identified / resumed connection
        self._gateway_open = asyncio.Event()  # cleared by hold_gateway()
        self._gateway_open.set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None
        self.port: int = 0
        # Where it listens, once started: REST, the gateway and the CDN share the one port.
        self.cdn_host = ""
        self.cdn_base = ""

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
        self.cdn_host = f"127.0.0.1:{self.port}"
        self.cdn_base = f"http://{self.cdn_host}"

    async def stop(self) -> None:
        self._gateway_open.set()  # a held connection must not keep the server open
        self.release_holds()
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
        return f"{self.cdn_base}{API_PREFIX}"

    @property
    def gateway_url(self) -> str:
        return f"ws://{self.cdn_host}/gateway"

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
