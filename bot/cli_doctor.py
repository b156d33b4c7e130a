"""`kontext-bot doctor`: check the settings, the database, the Discord token and the
bot's permissions, print a table, and exit 1 when something is wrong. It never calls
the image API, so it never spends credits, and never connects to the gateway."""

from __future__ import annotations

from bot.adapter.doctor import discord_findings
from bot.config import ConfigError, Settings, load
from bot.doctor import (
    FAIL,
    OK,
    SKIP,
    Finding,
    database_findings,
    results_finding,
    sqlite_finding,
    table,
)
from bot.logs import setup_logging

EXIT_PROBLEM = 1


async def run_doctor() -> int:
    try:
        settings = load(Settings)
    except ConfigError as exc:
        print(table([Finding("settings", FAIL, str(exc))]))
        return EXIT_PROBLEM
    # Only discord.py's warnings, if any, and masked like the bot's own.
    setup_logging("WARNING", settings.secrets, fmt=settings.log_format)
    findings = [Finding("settings", OK, "every setting is valid"), sqlite_finding()]
    found, channels = database_findings(settings)
    findings += found
    findings.append(results_finding(settings))
    findings += await discord_findings(settings, channels)
    findings.append(
        Finding("segmind key", SKIP, "not tried: a try costs credits (use /operator check)")
    )
    print(table(findings))
    return EXIT_PROBLEM if any(f.status == FAIL for f in findings) else 0
