"""The health and metrics endpoint, on when HTTP_PORT is set: `GET /healthz` and
`GET /metrics`, served by aiohttp (discord.py's own HTTP library). It is on the Discord
side because the bot's health includes its gateway connection."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiohttp import web
from discord.ext import commands

from bot.core import Core

log = logging.getLogger(__name__)

DB_PING_TIMEOUT_S = 2.0


class GatewayWatch:
    """Whether the gateway session is up, from discord.py's own events: up on READY or
    RESUMED, down as soon as the connection drops (until it resumes)."""

    def __init__(self, bot: commands.Bot) -> None:
        self._bot = bot
        self._up = False
        bot.add_listener(self._on_up, "on_connect")
        bot.add_listener(self._on_up, "on_resumed")
        bot.add_listener(self._on_down, "on_disconnect")

    async def _on_up(self) -> None:
        self._up = True

    async def _on_down(self) -> None:
        self._up = False

    @property
    def connected(self) -> bool:
        return self._up and not self._bot.is_closed()


async def problems(core: Core, gateway_connected: bool) -> list[str]:
    """Why the bot is not healthy, in short words; empty when it is."""
    found = []
    if not gateway_connected:
        found.append("not connected to Discord")
    if not core.edits.queue.alive:
        found.append("edit queue stopped")
    if core.health.halted is not None:
        found.append(f"edits halted ({core.health.halted.kind})")
    try:
        await asyncio.wait_for(core.database.ping(), DB_PING_TIMEOUT_S)
    except Exception:  # whatever went wrong, the answer is the same
        log.warning("Health check: the database did not answer", exc_info=True)
        found.append("database unavailable")
    return found


class OpsServer:
    """An aiohttp server on HTTP_HOST:HTTP_PORT; `port` is the one bound (0 picks one)."""

    def __init__(
        self, core: Core, gateway_connected: Callable[[], bool], *, host: str, port: int
    ) -> None:
        self._core = core
        self._gateway_connected = gateway_connected
        self._host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self.port).start()
        self.port = self._runner.addresses[0][1]
        log.info("Health and metrics on http://%s:%d (/healthz, /metrics)", self._host, self.port)

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """(host, port) of every socket listening."""
        if self._runner is None:
            return []
        return [(str(a[0]), int(a[1])) for a in self._runner.addresses]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, request: web.Request) -> web.Response:
        del request
        found = await problems(self._core, self._gateway_connected())
        if found:
            body = {"status": "unhealthy", "reason": found[0], "reasons": found}
            return web.json_response(body, status=503)
        return web.json_response({"status": "ok"})

    async def _metrics(self, request: web.Request) -> web.Response:
        del request
        body, content_type = self._core.metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": content_type})
