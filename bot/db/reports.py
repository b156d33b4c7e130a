"""The queries behind the admins' reports (usage per member, what the account paid)."""

from __future__ import annotations

from bot.db.connection import Database


async def edits_by_member(
    database: Database, guild_id: int, since: float
) -> list[tuple[int, int, int, float | None]]:
    """(user id, succeeded, failed, last edit) per member since `since`."""
    rows = await database.fetchall(
        """SELECT user_id, SUM(status = 'succeeded'), SUM(status = 'failed'), MAX(created_at)
           FROM generations WHERE guild_id = ? AND created_at >= ? GROUP BY user_id""",
        (guild_id, since),
    )
    return [(r[0], r[1], r[2], r[3]) for r in rows]


async def charged_by_member(database: Database, guild_id: int, since: float) -> dict[int, float]:
    rows = await database.fetchall(
        """SELECT user_id, SUM(amount) FROM charges
           WHERE guild_id = ? AND state = 'committed' AND created_at >= ? GROUP BY user_id""",
        (guild_id, since),
    )
    return {r[0]: float(r[1] or 0) for r in rows}


async def readings_since(
    database: Database, since: float
) -> list[tuple[float, float, float | None]]:
    """(at, remaining, that call's cost) for every reading since `since`, plus the one
    before it (to measure the first drop), oldest first."""
    rows = await database.fetchall(
        """SELECT r.at, r.remaining, g.cost FROM credit_readings r
           LEFT JOIN generations g ON g.id = r.generation_id
           WHERE r.id >= COALESCE((SELECT MAX(id) FROM credit_readings WHERE at < ?), 0)
           ORDER BY r.id""",
        (since,),
    )
    return [(float(r[0]), float(r[1]), r[2]) for r in rows]


async def held_for_delivery(database: Database, since: float) -> float:
    """What results not delivered yet hold (made since `since`): spent at the API, charged
    to no one unless they are delivered."""
    row = await database.fetchone(
        "SELECT COALESCE(SUM(amount), 0) FROM charges WHERE state = 'held' AND created_at >= ?",
        (since,),
    )
    return float(row[0]) if row else 0.0


async def charged_settled_since(
    database: Database, guild_id: int, since: float
) -> tuple[float, float]:
    """Committed charges settled since `since`: (every server, this server)."""
    row = await database.fetchone(
        """SELECT COALESCE(SUM(amount), 0), COALESCE(SUM(CASE WHEN guild_id = ? THEN amount END), 0)
           FROM charges WHERE state = 'committed' AND settled_at >= ?""",
        (guild_id, since),
    )
    return (float(row[0]), float(row[1])) if row else (0.0, 0.0)


async def first_reading_at(database: Database) -> float | None:
    row = await database.fetchone("SELECT MIN(at) FROM credit_readings")
    return None if row is None or row[0] is None else float(row[0])
