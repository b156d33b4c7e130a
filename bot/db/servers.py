"""Queries on what the operator decides per server (budget, access) and bot-wide state."""

from __future__ import annotations

import aiosqlite

from bot.db.charges import NANO_PER_CREDIT, spend_day
from bot.db.connection import Database


async def budget(database: Database, guild_id: int) -> float | None:
    row = await database.fetchone(
        "SELECT credits FROM server_budgets WHERE guild_id = ?", (guild_id,)
    )
    return None if row is None else float(row[0])


async def _put(
    conn: aiosqlite.Connection, table: str, key: tuple[str, object], value: tuple[str, object]
) -> None:
    """Upsert one keyed value; a None value deletes the row. `table` and the column names
    are this module's constants, never input."""
    (key_column, key_value), (column, new) = key, value
    if new is None:
        await conn.execute(f"DELETE FROM {table} WHERE {key_column} = ?", (key_value,))  # noqa: S608
        return
    await conn.execute(
        f"""INSERT INTO {table} ({key_column}, {column}) VALUES (?, ?)
            ON CONFLICT ({key_column}) DO UPDATE SET {column} = excluded.{column}""",  # noqa: S608
        (key_value, new),
    )


async def set_budget(conn: aiosqlite.Connection, guild_id: int, credits: float | None) -> None:
    """Set (or with None remove: the default applies) a server's budget."""
    await _put(conn, "server_budgets", ("guild_id", guild_id), ("credits", credits))


async def access(database: Database) -> dict[int, bool]:
    """The operator's allow/deny choices, by server."""
    rows = await database.fetchall("SELECT guild_id, allowed FROM server_access")
    return {int(r[0]): bool(r[1]) for r in rows}


async def set_access(conn: aiosqlite.Connection, guild_id: int, allowed: bool) -> None:
    await _put(conn, "server_access", ("guild_id", guild_id), ("allowed", int(allowed)))


async def spent_and_held(database: Database, guild_id: int, since: float) -> tuple[float, float]:
    """A server's spend (charged, or held for results awaiting delivery) and what its
    running edits have reserved, since `since` (a UTC midnight, or 0): its day totals."""
    row = await database.fetchone(
        """SELECT COALESCE(SUM(spent), 0), COALESCE(SUM(held), 0) FROM server_spend
           WHERE guild_id = ? AND day >= ?""",
        (guild_id, spend_day(since)),
    )
    return (row[0] / NANO_PER_CREDIT, row[1] / NANO_PER_CREDIT) if row else (0.0, 0.0)


async def members_charged(database: Database, guild_id: int, since: float) -> int:
    row = await database.fetchone(
        """SELECT COUNT(DISTINCT user_id) FROM charges
           WHERE guild_id = ? AND state != 'released' AND created_at >= ?""",
        (guild_id, since),
    )
    return int(row[0]) if row else 0


async def known(database: Database) -> set[int]:
    """Every server the bot has a record of (edits, budgets, access choices)."""
    rows = await database.fetchall(
        """SELECT guild_id FROM charges UNION SELECT guild_id FROM server_budgets
           UNION SELECT guild_id FROM server_access"""
    )
    return {int(r[0]) for r in rows if r[0]}  # 0: no server (never served)


async def state(database: Database, key: str) -> str | None:
    row = await database.fetchone("SELECT value FROM bot_state WHERE key = ?", (key,))
    return None if row is None else str(row[0])


async def set_state(conn: aiosqlite.Connection, key: str, value: str | None) -> None:
    """Set (or with None remove) one bot-wide value, such as a pause."""
    await _put(conn, "bot_state", ("key", key), ("value", value))
