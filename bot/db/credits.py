"""Queries on `credit_readings`: every balance the API reported."""

from __future__ import annotations

import time
from dataclasses import dataclass

from bot.db.connection import Database


async def last_credit_reading(database: Database) -> float | None:
    cur = await database.execute("SELECT remaining FROM credit_readings ORDER BY id DESC LIMIT 1")
    row = await cur.fetchone()
    return None if row is None else float(row[0])


async def add_credit_reading(
    database: Database, remaining: float, generation_id: int | None
) -> None:
    await database.write(
        "INSERT INTO credit_readings (at, remaining, generation_id) VALUES (?, ?, ?)",
        (time.time(), remaining, generation_id),
    )


@dataclass(frozen=True)
class CreditReading:
    at: float
    remaining: float
    generation_id: int | None  # the call that reported it (None: a check or a start-up)


async def credit_readings(database: Database) -> list[CreditReading]:
    """Every balance the API reported, oldest first."""
    rows = await database.fetchall(
        "SELECT at, remaining, generation_id FROM credit_readings ORDER BY id"
    )
    return [CreditReading(float(r[0]), float(r[1]), r[2]) for r in rows]
