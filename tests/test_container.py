"""The container, without Docker: the Dockerfile's and compose.yaml's promises, and the
image's exact entry point, settings and HEALTHCHECK run as processes against the stand-ins."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import signal
import sys
from pathlib import Path

import httpx
import pytest

from bot.config import Settings
from bot.db import generations
from tests.fake_discord import FakeDiscord
from tests.fake_segmind import FakeSegmind
from tests.helpers import make_image, read_database, unused_port
from tests.world import API_KEY, BOT_TOKEN, CHANNEL_ID, GUILD_ID, MEMBER_ID

ROOT = Path(__file__).resolve().parent.parent
VOLUME = "/data"
START_S = 30.0


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def image_env(found: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in found:
        if word == "ENV":
            env.update(part.split("=", 1) for part in shlex.split(rest))
    return env


def exec_form(found: list[tuple[str, str]], word: str) -> list[str]:
    [rest] = [r for w, r in found if w == word]
    return json.loads(rest)


def healthcheck_command(found: list[tuple[str, str]]) -> list[str]:
    [rest] = [r for w, r in found if w == "HEALTHCHECK"]
    options, _, command = rest.partition("CMD ")
    assert "--interval=" in options and "--start-period=" in options
    return json.loads(command)


DOCKERFILE = instructions(ROOT / "Dockerfile")


def test_the_image_is_slim_python_3_11_plus_and_runs_as_a_user_of_its_own() -> None:
    [base] = [r for w, r in DOCKERFILE if w == "FROM"]
    match = re.fullmatch(r"python:3\.(\d+)-slim", base)
    assert match and int(match.group(1)) >= 11, base
    users = [r for w, r in DOCKERFILE if w == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert json.loads(next(r for w, r in DOCKERFILE if w == "VOLUME")) == [VOLUME]
    env = image_env(DOCKERFILE)
    assert Path(env["DATABASE_PATH"]).parent == Path(VOLUME)
    assert Path(env["RESULTS_DIR"]).parent == Path(VOLUME)
    assert env["HTTP_PORT"] and env["LOG_FORMAT"] == "json"
    assert exec_form(DOCKERFILE, "ENTRYPOINT") == ["python", "-m", "bot"]
    assert healthcheck_command(DOCKERFILE) == ["python", "-m", "bot", "healthcheck"]
    # Every setting the image sets is a real one.
    assert {name.lower() for name in env if not name.startswith(("PYTHON", "PIP_"))} <= set(
        Settings.model_fields
    )
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert ".env" in ignored and "data/" in ignored  # no secrets or data baked in


def test_compose_restarts_unless_stopped_with_the_volume_and_dot_env() -> None:
    text = (ROOT / "compose.yaml").read_text()
    assert re.search(r"^\s+restart: unless-stopped$", text, re.MULTILINE)
    assert re.search(r"^\s+env_file: \.env$", text, re.MULTILINE)
    assert re.search(rf"^\s+- kontext-data:{VOLUME}$", text, re.MULTILINE)
    assert re.search(r"^volumes:\n  kontext-data:$", text, re.MULTILINE)
    # .env (copied from .env.example) names other paths: the container's must win.
    env = image_env(DOCKERFILE)
    for name in ("DATABASE_PATH", "RESULTS_DIR", "HTTP_HOST"):
        assert re.search(rf"^\s+{name}: {re.escape(env[name])}$", text, re.MULTILINE), name
    grace = re.search(r"^\s+stop_grace_period: (\d+)s$", text, re.MULTILINE)
    assert grace and int(grace.group(1)) > Settings.model_fields["shutdown_grace_s"].default


def in_volume(value: str, volume: Path) -> str:
    return str(volume / Path(value).relative_to(VOLUME)) if value.startswith(VOLUME) else value


async def run(command: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *command, cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


def python(command: list[str]) -> list[str]:
    """The image's command, with this interpreter standing for its `python`."""
    assert command[0] == "python"
    return [sys.executable, *command[1:]]


async def test_the_images_entry_point_and_settings_run_the_bot_and_pass_its_healthcheck(
    tmp_path: Path, segmind: FakeSegmind
) -> None:
    volume, workdir = tmp_path / "data", tmp_path / "app"
    workdir.mkdir()
    image = image_env(DOCKERFILE)
    env = {name: in_volume(value, volume) for name, value in image.items()}
    # The image's port may be taken on this machine; any free one proves the same.
    env["HTTP_PORT"] = str(unused_port())
    async with FakeDiscord() as discord:
        discord.add_guild(GUILD_ID, channels=[CHANNEL_ID], members=[{"id": MEMBER_ID}])
        env |= {
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "PYTHONPATH": str(ROOT),
            # What .env holds in production, pointed at the stand-ins here.
            "DISCORD_TOKEN": BOT_TOKEN,
            "SEGMIND_API_KEY": API_KEY,
            "SEGMIND_BASE_URL": segmind.base_url,
            "DISCORD_GUILD_IDS": str(GUILD_ID),
            "DISCORD_API_URL": discord.rest_base,
            "DISCORD_GATEWAY_URL": discord.gateway_url,
            "DISCORD_CDN_HOSTS": discord.cdn_host,
        }
        command = python(exec_form(DOCKERFILE, "ENTRYPOINT") + exec_form(DOCKERFILE, "CMD"))
        healthcheck = python(healthcheck_command(DOCKERFILE))
        log_path = tmp_path / "container.log"
        with log_path.open("wb") as log:
            proc = await asyncio.create_subprocess_exec(
                *command, cwd=workdir, env=env, stdout=log, stderr=log
            )
            try:
                await discord.wait_for(
                    lambda: _healthy(healthcheck, env, workdir), START_S, message="healthy"
                )
                async with httpx.AsyncClient(timeout=5, trust_env=False) as client:
                    metrics = await client.get(f"http://127.0.0.1:{env['HTTP_PORT']}/metrics")
                assert metrics.status_code == 200 and "kontext_edits" in metrics.text

                attachment = discord.add_attachment(
                    make_image(), "p.png", "image/png", channel_id=CHANNEL_ID
                )
                payload = discord.slash_command(
                    "edit",
                    {"prompt": "make it night"},
                    user_id=MEMBER_ID,
                    guild_id=GUILD_ID,
                    channel_id=CHANNEL_ID,
                    attachments={"image": attachment},
                )
                await discord.send_interaction(payload)
                await discord.wait_for(
                    lambda: any(m.get("attachments") for m in discord.messages.values()), 20
                )
                proc.send_signal(signal.SIGTERM)  # what `docker stop` does
                assert await asyncio.wait_for(proc.wait(), 30) == 0
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
        status, said = await run(healthcheck, env, workdir)
        assert status == 1 and "unhealthy" in said  # nothing answers once it stopped

    # Everything it keeps is in the volume.
    edits = await read_database(volume / "kontext.db", lambda d: generations.of_server(d, GUILD_ID))
    assert [g.status for g in edits] == ["succeeded"]
    assert (volume / "results").is_dir()
    assert sorted(p.name for p in workdir.iterdir()) == []
    # LOG_FORMAT=json from the image: every line of its output is one JSON object.
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert lines and all(isinstance(line, dict) for line in lines)
    assert any(line.get("status") == "succeeded" and line.get("job_id") for line in lines)
    assert BOT_TOKEN not in log_path.read_text() and API_KEY not in log_path.read_text()


async def _healthy(command: list[str], env: dict[str, str], cwd: Path) -> bool:
    status, _ = await run(command, env, cwd)
    return status == 0


@pytest.mark.parametrize("port", [None, "0"])
async def test_the_healthcheck_says_when_the_endpoint_is_off(
    tmp_path: Path, port: str | None
) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    if port is not None:
        env["HTTP_PORT"] = port
    status, said = await run([sys.executable, "-m", "bot", "healthcheck"], env, tmp_path)
    assert status == 2 and "HTTP_PORT is not set" in said
