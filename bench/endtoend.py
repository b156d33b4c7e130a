"""End to end, Discord included: the real bot (`python -m bot`) and the minimal bot
(bench/minimal.py), each against its own Discord stand-in and one shared Segmind stand-in,
edit by edit in turns, so the machine's noise hits both alike.

Every time comes from the stand-ins' own logs: the gateway event sent -> the API request
received (before the API) and the API answer handed back -> the upload received (after).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.standins import API_KEY, CHANNEL_ID, CREDITS

Result = dict[str, Any]
ROOT = Path(__file__).resolve().parent.parent
GUILD_ID = 4242
MEMBER_ID = 5001
BOT_TOKEN = "bench-bot-token"
MINIMAL_TOKEN = "bench-minimal-token"
READY_S = 60.0
EDIT_S = 60.0
# Between two edits: the bot finishes its bookkeeping after the upload (not timed).
SETTLE_S = 0.15
RESULT_UPLOAD = r"^/channels/\d+/messages$"
FOLLOWUP_UPLOAD = r"^/webhooks/\d+/[^/]+$"


@dataclass
class Contender:
    """One bot process and its Discord stand-in."""

    name: str
    discord: Any  # tests.fake_discord.FakeDiscord
    upload_path: str
    attachment: dict[str, Any] = field(default_factory=dict)
    pre_ms: list[float] = field(default_factory=list)
    post_ms: list[float] = field(default_factory=list)


def _uploads(contender: Contender, after: int) -> list[Any]:
    pattern = re.compile(contender.upload_path)
    return [
        r
        for r in contender.discord.requests[after:]
        if r.method == "POST" and r.files and pattern.search(r.path)
    ]


async def _start(
    argv: list[str], env: dict[str, str], log: Path, contender: Contender
) -> asyncio.subprocess.Process:
    out = log.open("ab")
    proc = await asyncio.create_subprocess_exec(*argv, cwd=ROOT, env=env, stdout=out, stderr=out)
    out.close()
    discord = contender.discord
    await discord.wait_for(
        lambda: discord.identifies and discord.requests_to("PUT", "/commands"),
        READY_S,
        message=f"the {contender.name} process to connect",
    )
    return proc


@contextlib.asynccontextmanager
async def _processes(
    data_dir: Path, api: Any, bot: Contender, minimal: Contender, mode: str
) -> AsyncIterator[None]:
    from tests.fake_discord import write_sitecustomize

    base = {"PATH": os.environ.get("PATH", ""), "HOME": str(data_dir)}
    bot_env = {
        **base,
        "PYTHONPATH": str(ROOT),
        "DISCORD_TOKEN": BOT_TOKEN,
        "SEGMIND_API_KEY": API_KEY,
        "SEGMIND_BASE_URL": api.base_url,
        "SEGMIND_INPUT_MODE": mode,
        "DATABASE_PATH": str(data_dir / "kontext.db"),
        "RESULTS_DIR": str(data_dir / "results"),
        "DISCORD_GUILD_IDS": str(GUILD_ID),
        "DISCORD_API_URL": bot.discord.rest_base,
        "DISCORD_GATEWAY_URL": bot.discord.gateway_url,
        "DISCORD_CDN_HOSTS": bot.discord.cdn_host,
        "QUOTA_DEFAULT_CREDITS": str(CREDITS),
        "SERVER_BUDGET_CREDITS": str(CREDITS),
        "LOG_LEVEL": "INFO",
    }
    site = data_dir / "site"
    site.mkdir(parents=True, exist_ok=True)
    write_sitecustomize(site)
    minimal_env = {
        **base,
        **minimal.discord.subprocess_env(),
        "PYTHONPATH": f"{site}{os.pathsep}{ROOT}",
        "MINIMAL_TOKEN": MINIMAL_TOKEN,
        "MINIMAL_GUILD_ID": str(GUILD_ID),
        "SEGMIND_URL": f"{api.base_url}/flux-kontext-dev",
        "SEGMIND_KEY": API_KEY,
    }
    procs = []
    try:
        procs.append(
            await _start([sys.executable, "-m", "bot"], bot_env, data_dir / "bot.log", bot)
        )
        procs.append(
            await _start(
                [sys.executable, "-m", "bench.minimal"],
                minimal_env,
                data_dir / "minimal.log",
                minimal,
            )
        )
        yield
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.terminate()
        for proc in procs:
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def _one_edit(api: Any, contender: Contender, prompt: str, keep: bool) -> None:
    discord = contender.discord
    payload = discord.slash_command(
        "edit", {"prompt": prompt}, user_id=MEMBER_ID, guild_id=GUILD_ID, channel_id=CHANNEL_ID,
        attachments={"image": contender.attachment},
    )  # fmt: skip
    seen = len(discord.requests)
    sent_at = time.monotonic()
    await discord.send_interaction(payload)
    uploads = await discord.wait_for(
        lambda: _uploads(contender, seen), EDIT_S, message=f"the {contender.name}'s upload"
    )
    upload = uploads[0]  # type: ignore[index]
    [call] = [r for r in api.requests if isinstance(r.json, dict) and r.json["prompt"] == prompt]
    await asyncio.sleep(SETTLE_S)
    if keep:
        contender.pre_ms.append((call.received_at - sent_at) * 1000)
        contender.post_ms.append((upload.at - call.answered_at) * 1000)


async def end_to_end(cfg: Result) -> Result:
    """`warmup` + `edits` edits per bot, in turns (bot, minimal, minimal, bot, ...)."""
    from tests.fake_discord import FakeDiscord
    from tests.fake_segmind import FakeSegmind

    data_dir = Path(cfg["data_dir"])
    data_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - before anything runs
    image = Path(cfg["image"]).read_bytes()  # noqa: ASYNC240
    async with (
        FakeSegmind(api_key=API_KEY, credits=CREDITS) as api,
        FakeDiscord() as bot_discord,
        FakeDiscord(bot_user_id=2000, application_id=2000, bot_name="Minimal") as min_discord,
    ):
        bot = Contender("bot", bot_discord, RESULT_UPLOAD)
        minimal = Contender("minimal bot", min_discord, FOLLOWUP_UPLOAD)
        for c in (bot, minimal):
            c.discord.add_guild(GUILD_ID, channels=[CHANNEL_ID], members=[{"id": MEMBER_ID}])
            c.attachment = c.discord.add_attachment(
                image, "photo.png", "image/png", channel_id=CHANNEL_ID
            )
        async with _processes(data_dir, api, bot, minimal, cfg["mode"]):
            warmup, edits = cfg["warmup"], cfg["edits"]
            for i in range(warmup + edits):
                order = (bot, minimal) if i % 2 == 0 else (minimal, bot)
                for c in order:
                    await _one_edit(api, c, f"edit {i} by the {c.name}", keep=i >= warmup)
    return {"bot": _summary(bot), "minimal": _summary(minimal)}


def _summary(c: Contender) -> Result:
    from bench.worker import percentile

    total = [a + b for a, b in zip(c.pre_ms, c.post_ms, strict=True)]
    return {
        "edits": len(total),
        **{
            f"{name}_{label}": percentile(values, q)
            for name, values in (("pre", c.pre_ms), ("post", c.post_ms), ("total", total))
            for label, q in (("p50", 0.5), ("p95", 0.95))
        },
    }
