"""The test server the bot serves in tests: its ids, and the settings the bot runs with."""

from __future__ import annotations

from pathlib import Path

from bot.config import Settings

API_KEY = "sk-test-0123456789abcdef"
GUILD_ID = 4242
CHANNEL_ID = 4243
MEMBER_ID = 5001
OTHER_MEMBER_ID = 5002
ADMIN_ID = 5003
OPERATOR_ID = 1  # the stand-in application's owner: the operator unless OPERATOR_IDS says
BOT_TOKEN = "Bot.token-that-must-never-leak"
MANAGE_GUILD = 1 << 5
NO_PERMISSION = "You don't have permission to use this command."
ALERTS_CHANNEL_ID = 4244


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    """Real Settings, built from keyword arguments only (no .env, no environment surprises)."""
    values: dict[str, object] = {
        "discord_token": BOT_TOKEN,
        "segmind_api_key": API_KEY,
        "database_path": tmp_path / "data" / "kontext.db",
        "results_dir": tmp_path / "data" / "results",
        "discord_guild_ids": (GUILD_ID,),
        "segmind_max_retries": 1,
        "segmind_timeout_s": 5,
        # Far above what tests spend: tests of server budgets set their own.
        "server_budget_credits": 1000.0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]
