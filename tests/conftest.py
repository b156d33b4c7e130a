"""Shared fixtures: real stand-ins on 127.0.0.1, a real SQLite file, and the whole bot
against both (tests/harness.py)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from bot import db
from bot.client import KontextBot
from tests.clock import StoppedClock
from tests.fake_discord import FakeDiscord
from tests.fake_segmind import FakeSegmind
from tests.harness import Harness
from tests.helpers import LocalServer
from tests.world import (
    ADMIN_ID,
    API_KEY,
    BOT_TOKEN,
    CHANNEL_ID,
    GUILD_ID,
    MEMBER_ID,
    OTHER_MEMBER_ID,
    make_settings,
)


@pytest.fixture
async def segmind() -> AsyncIterator[FakeSegmind]:
    async with FakeSegmind(api_key=API_KEY) as fake:
        yield fake


@pytest.fixture
def clock() -> StoppedClock:
    """A clock that stands still until the test moves it (a file may bring its own)."""
    return StoppedClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "kontext.db"


@pytest.fixture
async def conn(db_path: Path) -> AsyncIterator[db.Database]:
    """The real schema in a real SQLite file, behind the bot's own Database wrapper."""
    connection = await db.connect(db_path)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
async def local_server() -> AsyncIterator[LocalServer]:
    """A running 127.0.0.1 server; tests add routes with `route`/`serve_bytes`."""
    async with LocalServer() as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """A plain HTTP client for code that takes one (trust_env off: loopback only)."""
    async with httpx.AsyncClient(timeout=10.0, trust_env=False) as client:
        yield client


@pytest.fixture
async def harness(
    tmp_path: Path, segmind: FakeSegmind, request: pytest.FixtureRequest
) -> AsyncIterator[Harness]:
    """Overrides come from `settings` marks: the module's (`pytestmark`), then the test's."""
    overrides: dict[str, object] = {}
    for marker in reversed(list(request.node.iter_markers("settings"))):
        overrides.update(marker.kwargs)
    async with FakeDiscord() as discord:
        discord.add_guild(
            GUILD_ID,
            channels=[CHANNEL_ID],
            members=[{"id": MEMBER_ID}, {"id": OTHER_MEMBER_ID}, {"id": ADMIN_ID}],
        )
        settings = make_settings(
            tmp_path,
            segmind_base_url=segmind.base_url,
            discord_cdn_hosts=(discord.cdn_host,),
            **overrides,
        )
        bot = KontextBot(settings, guild_ready_timeout=0.05)
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(discord.running(bot, BOT_TOKEN))
            yield Harness(discord, segmind, bot, settings, stack)


@pytest.fixture
def h(harness: Harness) -> Harness:
    """The harness under its short name (a file that tunes it defines its own)."""
    return harness


@pytest.fixture
async def world(segmind: FakeSegmind) -> AsyncIterator[tuple[FakeDiscord, FakeSegmind]]:
    """Both stand-ins, for a bot run as a real process (tests/test_process.py)."""
    async with FakeDiscord() as discord:
        discord.add_guild(
            GUILD_ID, channels=[CHANNEL_ID], members=[{"id": MEMBER_ID}, {"id": OTHER_MEMBER_ID}]
        )
        yield discord, segmind
