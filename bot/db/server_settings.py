"""Queries on `guild_settings`: a server's own choices (alerts channel, iteration,
the safety filter in age-restricted channels)."""

from __future__ import annotations

from typing import Any

import aiosqlite

from bot.db.connection import Database

# Columns of guild_settings that admins change (never user input).
COLUMNS = ("alerts_channel_id", "iterate_author_only", "safety_filter_off")


def _checked(column: str) -> str:
    if column not in COLUMNS:
        raise ValueError(f"unknown server setting {column!r}")
    return column


async def get(database: Database, guild_id: int, column: str) -> Any:
    row = await database.fetchone(
        f"SELECT {_checked(column)} FROM guild_settings WHERE guild_id = ?",  # noqa: S608 - fixed names
        (guild_id,),
    )
    return row[0] if row else None


async def put(conn: aiosqlite.Connection, guild_id: int, column: str, value: object) -> None:
    column = _checked(column)
    await conn.execute(
        f"""INSERT INTO guild_settings (guild_id, {column}) VALUES (?, ?)
            ON CONFLICT (guild_id) DO UPDATE SET {column} = excluded.{column}""",  # noqa: S608
        (guild_id, value),
    )


async def alerts_channels(database: Database) -> list[tuple[int, int]]:
    """(guild id, channel id) for every server that chose an alerts channel."""
    rows = await database.fetchall(
        """SELECT guild_id, alerts_channel_id FROM guild_settings
           WHERE alerts_channel_id IS NOT NULL ORDER BY guild_id"""
    )
    return [(r[0], r[1]) for r in rows]


async def of_guild(database: Database, guild_id: int) -> dict[str, Any]:
    """Every setting a server has a row for, by column (empty: it never chose any)."""
    row = await database.fetchone(
        f"SELECT {', '.join(COLUMNS)} FROM guild_settings WHERE guild_id = ?",  # noqa: S608 - fixed names
        (guild_id,),
    )
    return dict(zip(COLUMNS, row, strict=True)) if row else {}
