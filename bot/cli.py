"""Command line: `kontext-bot` (or `python -m bot`) runs the bot; `edit` runs one edit;
`backup`, `restore`, `doctor` and `healthcheck` look after a running installation (each in
its own `bot/cli_*.py`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path

import discord

from bot.config import (
    ApiSettings,
    ConfigError,
    HttpSettings,
    Settings,
    SettingsT,
    StorageSettings,
    load,
)
from bot.db.connection import sqlite_too_old
from bot.instance import AlreadyRunning, InstanceLock
from bot.logs import setup_logging
from bot.params import ASPECT_RATIOS, OUTPUT_FORMATS

log = logging.getLogger("bot")

EXIT_CONFIG = 2
EXIT_FAILED = 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kontext-bot", description="Discord bot for image editing with FLUX.1 Kontext."
    )
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", help="start the bot (the default)")
    edit = sub.add_parser("edit", help="run one edit from the terminal to test a key and settings")
    edit.add_argument("image", help="path or http(s) URL of the input image")
    edit.add_argument("prompt", help="the edit instruction")
    edit.add_argument("-o", "--output", required=True, type=Path, help="where to write the result")
    edit.add_argument("--seed", type=int)
    edit.add_argument("--guidance", type=float)
    edit.add_argument("--steps", type=int)
    edit.add_argument("--aspect-ratio", choices=ASPECT_RATIOS)
    edit.add_argument("--output-format", choices=OUTPUT_FORMATS)
    edit.add_argument("--quality", type=int)
    backup = sub.add_parser("backup", help="copy the database (safe while the bot runs)")
    backup.add_argument("path", type=Path, help="the new backup file")
    restore = sub.add_parser("restore", help="replace the database with a backup (bot stopped)")
    restore.add_argument("path", type=Path, help="the backup file")
    sub.add_parser("doctor", help="check settings, database, token and permissions")
    sub.add_parser("healthcheck", help="exit 0 when GET /healthz answers 200 (containers)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.command == "edit":
        from bot.cli_edit import run_edit

        settings = _load_or_exit(ApiSettings)
        # The terminal edit prints its own summary; INFO chatter would bury it.
        level = "WARNING" if settings.log_level == "INFO" else settings.log_level
        setup_logging(level, settings.secrets, fmt=settings.log_format)
        sys.exit(asyncio.run(run_edit(settings, args)))
    if args.command in ("backup", "restore"):
        from bot.cli_backup import run_backup, run_restore

        storage = _load_or_exit(StorageSettings)
        sys.exit((run_backup if args.command == "backup" else run_restore)(storage, args.path))
    if args.command == "doctor":
        from bot.cli_doctor import run_doctor

        sys.exit(asyncio.run(run_doctor()))
    if args.command == "healthcheck":
        from bot.cli_health import run_healthcheck

        sys.exit(run_healthcheck(_load_or_exit(HttpSettings)))
    settings = _load_or_exit(Settings)
    setup_logging(settings.log_level, settings.secrets, fmt=settings.log_format)
    sys.exit(asyncio.run(run_bot(settings)))


def _load_or_exit(cls: type[SettingsT]) -> SettingsT:
    try:
        return load(cls)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        sys.exit(EXIT_CONFIG)


async def run_bot(settings: Settings) -> int:
    """Run until stopped by SIGINT/SIGTERM; returns the process exit status."""
    if (too_old := sqlite_too_old()) is not None:
        print(too_old, file=sys.stderr)
        return EXIT_CONFIG
    try:
        # Before anything else (even logging in): a second bot on this database would
        # "recover" the live jobs of the first.
        instance = InstanceLock.acquire(settings.database_path)
    except AlreadyRunning as exc:
        print(exc.message, file=sys.stderr)
        return EXIT_CONFIG
    try:
        return await _run_locked(settings, instance)
    finally:
        instance.release()


async def _run_locked(settings: Settings, instance: InstanceLock) -> int:
    from bot.client import KontextBot, point_discord_at

    if settings.discord_api_url or settings.discord_gateway_url:
        point_discord_at(settings.discord_api_url, settings.discord_gateway_url)
    bot = KontextBot(settings, instance=instance)
    loop = asyncio.get_running_loop()
    stopping: set[asyncio.Future[None]] = set()  # keeps the shutdown task referenced

    def on_signal() -> None:
        stopping.add(asyncio.ensure_future(bot.shutdown()))

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, on_signal)
    try:
        async with bot:
            await bot.start(settings.discord_token.get_secret_value())
        # start() returns as soon as a close begins; wait for that close to finish.
        await bot.close()
    except discord.LoginFailure:
        print(
            "DISCORD_TOKEN was rejected by Discord: reset it in the developer portal "
            "(Bot > Reset Token) and update .env",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    except discord.PrivilegedIntentsRequired:
        print(
            "MESSAGE_CONTENT_INTENT is on but the intent is not enabled for this bot: "
            "enable it in the developer portal (Bot > Privileged Gateway Intents) or turn it off",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    return 0
