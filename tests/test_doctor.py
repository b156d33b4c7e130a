"""`kontext-bot doctor` against the stand-ins: settings, database, token, permissions."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot import db
from bot.adapter.doctor import base_permissions, channel_permissions, missing
from bot.db import generations
from tests.fake_discord import ADMINISTRATOR, ATTACH_FILES, BOT_PERMISSIONS, FakeDiscord
from tests.fake_segmind import FakeSegmind
from tests.helpers import make_new_generation
from tests.test_config_cli import forge_sqlite_version, run_bot_async
from tests.world import API_KEY, BOT_TOKEN, CHANNEL_ID, GUILD_ID

QUIET_CHANNEL_ID = 4250  # a channel nobody used /edit in


@pytest.fixture
async def discord() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as fake:
        fake.add_guild(GUILD_ID, name="Painters", channels=[CHANNEL_ID, QUIET_CHANNEL_ID])
        yield fake


async def edited_in(database_path: Path, *channel_ids: int) -> None:
    """A database where members used /edit in these channels."""
    database = await db.connect(database_path)
    try:
        for channel_id in channel_ids:
            await generations.insert(
                database, make_new_generation(guild_id=GUILD_ID, channel_id=channel_id)
            )
    finally:
        await database.close()


async def doctor(
    tmp_path: Path, discord: FakeDiscord, segmind: FakeSegmind, **extra: str
) -> tuple[int, list[str], str]:
    env = {
        "DISCORD_TOKEN": BOT_TOKEN,
        "SEGMIND_API_KEY": API_KEY,
        "SEGMIND_BASE_URL": segmind.base_url,
        "DATABASE_PATH": str(tmp_path / "data" / "kontext.db"),
        "RESULTS_DIR": str(tmp_path / "data" / "results"),
        "DISCORD_API_URL": discord.rest_base,
        **extra,
    }
    status, out, err = await run_bot_async(tmp_path, "doctor", **env)
    assert BOT_TOKEN not in out + err and API_KEY not in out + err
    assert segmind.requests == []  # it never spends credits
    assert discord.gateway_connections == []  # nor connects to the gateway
    return status, out.splitlines(), err


def row(lines: list[str], check: str) -> str:
    [found] = [line for line in lines if line.strip().startswith(check)]
    return found


def deny(discord: FakeDiscord, channel_id: int, target_id: int, bits: int) -> None:
    """A permission overwrite on a channel (a role's, or @everyone's with the server id)."""
    discord.channels[channel_id]["permission_overwrites"].append(
        {"id": str(target_id), "type": 0, "allow": "0", "deny": str(bits)}
    )


async def test_doctor_finds_a_missing_attach_files_permission(
    tmp_path: Path, discord: FakeDiscord, segmind: FakeSegmind
) -> None:
    await edited_in(tmp_path / "data" / "kontext.db", CHANNEL_ID)
    deny(discord, CHANNEL_ID, GUILD_ID, ATTACH_FILES)  # @everyone may not attach files there
    status, lines, err = await doctor(tmp_path, discord, segmind)
    assert status == 1, (lines, err)
    channel = row(lines, f"#general ({CHANNEL_ID})")
    assert "FAIL" in channel and channel.endswith("missing Attach Files")
    assert "ok" in row(lines, f"server Painters ({GUILD_ID})")  # server-wide it may
    assert not any(f"({QUIET_CHANNEL_ID})" in line for line in lines)  # no /edit there
    assert "ok" in row(lines, "discord token")
    assert "ok" in row(lines, "database schema")


async def test_doctor_passes_when_everything_is_in_order(
    tmp_path: Path, discord: FakeDiscord, segmind: FakeSegmind
) -> None:
    await edited_in(tmp_path / "data" / "kontext.db", CHANNEL_ID)
    status, lines, err = await doctor(tmp_path, discord, segmind)
    assert status == 0, (lines, err)
    assert lines[0].split() == ["check", "status", "detail"]
    for check in ("settings", "database schema", "database integrity", "discord token"):
        assert " ok " in row(lines, check)
    assert "has every permission" in row(lines, f"#general ({CHANNEL_ID})")
    assert "skip" in row(lines, "segmind key")
    assert not any(" FAIL " in line for line in lines)


async def test_doctor_finds_a_role_missing_a_permission_server_wide(
    tmp_path: Path, discord: FakeDiscord, segmind: FakeSegmind
) -> None:
    await edited_in(tmp_path / "data" / "kontext.db", CHANNEL_ID)
    everyone, bot_role = discord.guilds[GUILD_ID]["roles"][:2]
    everyone["permissions"] = "0"
    bot_role["permissions"] = str(BOT_PERMISSIONS & ~ATTACH_FILES)
    status, lines, _ = await doctor(tmp_path, discord, segmind)
    assert status == 1
    assert row(lines, f"server Painters ({GUILD_ID})").endswith("missing Attach Files")
    assert row(lines, f"#general ({CHANNEL_ID})").endswith("missing Attach Files")


async def test_doctor_reports_a_rejected_token(
    tmp_path: Path, discord: FakeDiscord, segmind: FakeSegmind
) -> None:
    discord.token = "the-real-token"  # the stand-in refuses any other
    status, lines, _ = await doctor(tmp_path, discord, segmind)
    assert status == 1
    assert "FAIL" in row(lines, "discord token") and "rejected" in row(lines, "discord token")
    assert "warn" in row(lines, "database")  # not created yet: the bot will create it
    assert not (tmp_path / "data" / "kontext.db").exists()  # and doctor did not


async def test_doctor_reports_bad_settings_in_its_table(tmp_path: Path) -> None:
    status, out, _ = await run_bot_async(tmp_path, "doctor")
    assert status == 1
    assert "FAIL" in out and "DISCORD_TOKEN is not set" in out


async def test_doctor_reports_a_database_newer_than_the_bot(
    tmp_path: Path, discord: FakeDiscord, segmind: FakeSegmind
) -> None:
    path = tmp_path / "data" / "kontext.db"
    await edited_in(path)
    database = await db.connect(path)
    await database.write("PRAGMA user_version = 999")  # forged: as a newer bot leaves it
    await database.close()
    status, lines, _ = await doctor(tmp_path, discord, segmind)
    assert status == 1
    schema = row(lines, "database schema")
    assert "FAIL" in schema and "upgrade the bot" in schema


async def test_doctor_reports_an_sqlite_too_old_for_the_database(
    tmp_path: Path, discord: FakeDiscord, segmind: FakeSegmind
) -> None:
    forged = forge_sqlite_version(tmp_path / "site", "3.22.0")
    status, lines, _ = await doctor(tmp_path, discord, segmind, PYTHONPATH=forged)
    assert status == 1
    found = row(lines, "sqlite")
    assert "FAIL" in found and "3.22.0" in found and "3.31 or newer" in found


async def test_doctor_shows_the_sqlite_version_it_runs_with(
    tmp_path: Path, discord: FakeDiscord, segmind: FakeSegmind
) -> None:
    _, lines, _ = await doctor(tmp_path, discord, segmind)
    assert f" ok      SQLite {sqlite3.sqlite_version}" in row(lines, "sqlite")


def test_permissions_follow_discords_order_of_overwrites() -> None:
    guild = {
        "id": "1",
        "owner_id": "99",
        "roles": [
            {"id": "1", "permissions": str(BOT_PERMISSIONS)},  # @everyone
            {"id": "2", "permissions": "0"},
            {"id": "3", "permissions": str(ADMINISTRATOR)},
        ],
    }
    base = base_permissions(guild, [2], user_id=7)
    assert missing(base) == []
    denied = {
        "permission_overwrites": [{"id": "1", "type": 0, "allow": "0", "deny": str(ATTACH_FILES)}]
    }
    assert missing(channel_permissions(base, denied, 1, [2], 7)) == ["Attach Files"]
    # A role's allow beats @everyone's deny; the member's own deny beats both.
    allowed = {
        "permission_overwrites": [
            *denied["permission_overwrites"],
            {"id": "2", "type": 0, "allow": str(ATTACH_FILES), "deny": "0"},
        ]
    }
    assert missing(channel_permissions(base, allowed, 1, [2], 7)) == []
    own = {"id": "7", "type": 1, "allow": "0", "deny": str(ATTACH_FILES)}
    mine = {"permission_overwrites": [*allowed["permission_overwrites"], own]}
    assert missing(channel_permissions(base, mine, 1, [2], 7)) == ["Attach Files"]
    # Administrators and the owner are never denied anything.
    assert missing(channel_permissions(base_permissions(guild, [3], 7), mine, 1, [3], 7)) == []
    assert missing(channel_permissions(base_permissions(guild, [], 99), mine, 1, [], 99)) == []
