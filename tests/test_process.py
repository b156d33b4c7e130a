"""The real `python -m bot` process: killed with SIGKILL mid-call, stopped with SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

import pytest

from bot import db
from bot.db import charges, generations, jobs
from tests.fake_discord import FakeDiscord
from tests.fake_segmind import FakeSegmind
from tests.helpers import make_image, read_database
from tests.world import API_KEY, BOT_TOKEN, CHANNEL_ID, GUILD_ID, MEMBER_ID, OTHER_MEMBER_ID

ROOT = Path(__file__).resolve().parent.parent
READY_S = 30.0


def bot_env(tmp_path: Path, discord: FakeDiscord, segmind: FakeSegmind, **extra: str) -> dict:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "PYTHONPATH": str(ROOT),
        "DISCORD_TOKEN": BOT_TOKEN,
        "SEGMIND_API_KEY": API_KEY,
        "SEGMIND_BASE_URL": segmind.base_url,
        "SEGMIND_MAX_RETRIES": "0",
        "DATABASE_PATH": str(tmp_path / "kontext.db"),
        "RESULTS_DIR": str(tmp_path / "results"),
        "DISCORD_GUILD_IDS": str(GUILD_ID),
        "DISCORD_API_URL": discord.rest_base,
        "DISCORD_GATEWAY_URL": discord.gateway_url,
        "DISCORD_CDN_HOSTS": discord.cdn_host,
        "LOG_LEVEL": "INFO",
    }
    env.update(extra)
    return env


@pytest.fixture
def env(tmp_path: Path, world: tuple[FakeDiscord, FakeSegmind]) -> dict:
    """The bot process's environment, with nothing but the stand-ins set."""
    return bot_env(tmp_path, *world)


@asynccontextmanager
async def bot_process(
    tmp_path: Path, discord: FakeDiscord, env: dict
) -> AsyncIterator[asyncio.subprocess.Process]:
    log = (tmp_path / "bot.log").open("ab")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", cwd=tmp_path, env=env, stdout=log, stderr=log
    )
    try:
        connections = len(discord.identifies)
        await discord.wait_for(
            lambda: (
                len(discord.identifies) > connections and discord.requests_to("PUT", "/commands")
            ),
            READY_S,
            message="the bot process to connect",
        )
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        log.close()


T = TypeVar("T")


async def read(tmp_path: Path, reader: Callable[[db.Database], Awaitable[T]]) -> T:
    """What the bot process wrote (it owns the database: read only)."""
    return await read_database(tmp_path / "kontext.db", reader)


async def job_states(tmp_path: Path) -> list[str]:
    return [j.state for j in await read(tmp_path, jobs.states)]


async def edits(tmp_path: Path) -> list[generations.Generation]:
    return await read(tmp_path, lambda d: generations.of_server(d, GUILD_ID))


async def charge_rows(tmp_path: Path) -> list[charges.Charge]:
    return await read(tmp_path, lambda d: charges.of_server(d, GUILD_ID))


async def send_edit(discord: FakeDiscord, prompt: str, user_id: int) -> int:
    attachment = discord.add_attachment(
        make_image(200, 150), "p.png", "image/png", channel_id=CHANNEL_ID
    )
    payload = discord.slash_command(
        "edit", {"prompt": prompt}, user_id=user_id, guild_id=GUILD_ID, channel_id=CHANNEL_ID,
        attachments={"image": attachment},
    )  # fmt: skip
    await discord.send_interaction(payload)
    return int(payload["id"])


async def _equals(found: Awaitable[object], expected: object) -> bool:
    return await found == expected


def channel_texts(discord: FakeDiscord) -> list[str]:
    return [m.get("content") or "" for m in discord.messages.values()]


async def test_kill_9_mid_call_loses_nothing(tmp_path: Path, world: tuple) -> None:
    discord, segmind = world
    env = bot_env(tmp_path, discord, segmind, SEGMIND_MAX_CONCURRENCY="1")
    segmind.delay = 60  # the call will still be running when the process dies
    async with bot_process(tmp_path, discord, env) as proc:
        await send_edit(discord, "running when killed", MEMBER_ID)
        await discord.wait_for(lambda: segmind.in_flight == 1, 15)
        await send_edit(discord, "queued when killed", OTHER_MEMBER_ID)
        await discord.wait_for(lambda: _equals(job_states(tmp_path), ["running", "queued"]), 15)
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    assert [g.status for g in await edits(tmp_path)] == ["pending"]
    assert [c.state for c in await charge_rows(tmp_path)] == ["reserved"]

    segmind.delay = 0
    async with bot_process(tmp_path, discord, env):
        # The interrupted edit: its member is told, and pays nothing.
        await discord.wait_for(
            lambda: any(
                "did not finish because the bot restarted" in t for t in channel_texts(discord)
            ),
            20,
        )
        # The queued edit runs after the restart and is delivered with a ping.
        await discord.wait_for(
            lambda: any(
                t == f"<@{OTHER_MEMBER_ID}> your edit is ready." for t in channel_texts(discord)
            ),
            20,
        )
        await discord.wait_for(lambda: _equals(job_states(tmp_path), ["failed", "done"]), 10)
    first, second = await edits(tmp_path)
    assert (first.prompt, first.status, first.failure_reason) == (
        "running when killed", "failed", "interrupted",
    )  # fmt: skip
    assert (second.prompt, second.status) == ("queued when killed", "succeeded")
    interrupted, delivered = await charge_rows(tmp_path)
    assert (interrupted.state, interrupted.amount) == ("released", 0)
    assert delivered.state == "committed"
    assert await job_states(tmp_path) == ["failed", "done"]


async def test_sigterm_lets_a_running_edit_finish_and_exits_cleanly(
    tmp_path: Path, world: tuple, env: dict
) -> None:
    discord, segmind = world
    segmind.delay = 1.5
    async with bot_process(tmp_path, discord, env) as proc:
        await send_edit(discord, "finish me", MEMBER_ID)
        await discord.wait_for(lambda: segmind.in_flight == 1, 15)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    assert [g.status for g in await edits(tmp_path)] == ["succeeded"]
    assert await job_states(tmp_path) == ["done"]
    assert [m for m in discord.messages.values() if m.get("attachments")]


async def test_sigterm_past_the_grace_period_stops_the_edit_without_charge(
    tmp_path: Path, world: tuple
) -> None:
    discord, segmind = world
    segmind.delay = 30
    env = bot_env(tmp_path, discord, segmind, SHUTDOWN_GRACE_S="0.5")
    async with bot_process(tmp_path, discord, env) as proc:
        interaction = await send_edit(discord, "too slow", MEMBER_ID)
        await discord.wait_for(lambda: segmind.in_flight == 1, 15)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    told = [m.get("content", "") for m in discord.followups(interaction)]
    assert any("restarting" in t and "not charged" in t for t in told), told
    assert [g.status for g in await edits(tmp_path)] == ["failed"]
    assert [c.state for c in await charge_rows(tmp_path)] == ["released"]


async def test_a_second_process_on_the_same_database_refuses_to_start(
    tmp_path: Path, world: tuple, env: dict
) -> None:
    discord, _ = world
    async with bot_process(tmp_path, discord, env) as first:
        second = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", cwd=tmp_path, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            _out, err = await asyncio.wait_for(second.communicate(), READY_S)
        finally:
            if second.returncode is None:
                second.kill()
                await second.wait()
        assert second.returncode == 2
        lines = err.decode().strip().splitlines()
        assert lines == [
            f"Another Kontext is already running on {tmp_path / 'kontext.db'} "
            f"(pid {first.pid} on host {socket.gethostname()}); stop it first"
        ]
        assert first.returncode is None  # the first one runs on, untouched
        first.send_signal(signal.SIGKILL)
        await first.wait()
    # A crash leaves no lock behind: the next start works.
    async with bot_process(tmp_path, discord, env) as third:
        assert third.returncode is None


async def test_an_edit_is_written_down_before_discord_shows_it_accepted(
    tmp_path: Path, world: tuple, env: dict
) -> None:
    discord, segmind = world
    async with bot_process(tmp_path, discord, env) as proc:
        # Discord keeps the bot's acknowledgement ("thinking...") waiting; the process dies
        # right then, as a kill -9 between the two would have it.
        held = discord.hold_next("POST", r"^/interactions/\d+/[^/]+/callback$")
        await send_edit(discord, "seen accepted", MEMBER_ID)
        await asyncio.wait_for(held.arrived.wait(), 15)
        assert held.request is not None and held.request.json["type"] == 5
        [job] = await read(tmp_path, jobs.states)
        assert (job.user_id, job.state) == (MEMBER_ID, "queued")
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        held.release.set()
    assert [r for r in segmind.requests if r.method == "POST"] == []

    async with bot_process(tmp_path, discord, env):
        # The edit the member saw accepted runs after the restart and pings them.
        await discord.wait_for(
            lambda: any(t == f"<@{MEMBER_ID}> your edit is ready." for t in channel_texts(discord)),
            20,
        )
        await discord.wait_for(lambda: _equals(job_states(tmp_path), ["done"]), 10)
    assert [(g.prompt, g.status) for g in await edits(tmp_path)] == [("seen accepted", "succeeded")]
