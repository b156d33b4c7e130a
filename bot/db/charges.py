"""Queries on `charges`: one row per edit that passed the quota check, reserved, then
committed at the real cost or released. Every money movement is one statement."""

from __future__ import annotations

from dataclasses import dataclass

from bot.db.connection import Database

EPSILON = 1e-9


@dataclass(frozen=True)
class Usage:
    used: float  # committed
    held: float  # reserved by edits still running


async def usage(database: Database, guild_id: int, user_id: int, since: float) -> Usage:
    row = await database.fetchone(
        """SELECT COALESCE(SUM(CASE WHEN state = 'committed' THEN amount END), 0),
                  COALESCE(SUM(CASE WHEN state = 'reserved' THEN reserved END), 0)
           FROM charges WHERE guild_id = ? AND user_id = ? AND created_at >= ?""",
        (guild_id, user_id, since),
    )
    assert row is not None
    return Usage(float(row[0]), float(row[1]))


async def reserve(
    database: Database,
    *,
    guild_id: int,
    user_id: int,
    amount: float,
    allowance: float,
    since: float,
    budget: float,
    budget_since: float,
    now: float,
) -> int | None:
    """Insert a reservation only if the member's spend since `since`, plus what they hold,
    plus `amount`, stays within `allowance`, and the server's since `budget_since` within
    `budget`; the checks and the insert are one statement. Returns the charge id, or None
    when refused."""
    cur = await database.write(
        """INSERT INTO charges (guild_id, user_id, state, reserved, created_at)
           SELECT ?, ?, 'reserved', ?, ?
           WHERE (SELECT COALESCE(SUM(CASE WHEN state = 'committed' THEN amount
                                           ELSE reserved END), 0)
                  FROM charges
                  WHERE guild_id = ? AND user_id = ? AND state != 'released'
                    AND created_at >= ?) + ? <= ? + ?
             AND (SELECT COALESCE(SUM(CASE WHEN state = 'committed' THEN amount
                                           ELSE reserved END), 0)
                  FROM charges
                  WHERE guild_id = ? AND state != 'released' AND created_at >= ?) + ? <= ? + ?""",
        (
            guild_id, user_id, amount, now,
            guild_id, user_id, since, amount, allowance, EPSILON,
            guild_id, budget_since, amount, budget, EPSILON,
        ),
    )  # fmt: skip
    if cur.rowcount != 1 or cur.lastrowid is None:
        return None
    return cur.lastrowid


async def attach(database: Database, charge_id: int, generation_id: int) -> None:
    await database.write(
        "UPDATE charges SET generation_id = ? WHERE id = ?", (generation_id, charge_id)
    )


async def commit(
    database: Database, charge_id: int, amount: float, source: str, now: float
) -> bool:
    cur = await database.write(
        """UPDATE charges SET state = 'committed', amount = ?, cost_source = ?,
               settled_at = ? WHERE id = ? AND state = 'reserved'""",
        (max(0.0, amount), source, now, charge_id),
    )
    return cur.rowcount == 1


async def release(database: Database, charge_id: int, now: float) -> bool:
    cur = await database.write(
        """UPDATE charges SET state = 'released', amount = 0, settled_at = ?
           WHERE id = ? AND state = 'reserved'""",
        (now, charge_id),
    )
    return cur.rowcount == 1


async def release_generation(database: Database, generation_id: int, now: float) -> int:
    """Give back whatever an edit holds or was charged; returns the rows changed."""
    cur = await database.write(
        """UPDATE charges SET state = 'released', amount = 0, settled_at = ?
           WHERE generation_id = ? AND state IN ('reserved', 'committed')""",
        (now, generation_id),
    )
    return cur.rowcount


async def settle_stale(database: Database, cutoff: float, now: float) -> tuple[int, int]:
    """Commit reservations made before `cutoff` whose edit succeeded (at its recorded
    cost) and release the rest. Returns (committed, released)."""
    committed = await database.write(
        """UPDATE charges SET state = 'committed', settled_at = ?,
               amount = (SELECT COALESCE(g.cost, charges.reserved) FROM generations g
                         WHERE g.id = charges.generation_id),
               cost_source = (SELECT COALESCE(g.cost_source, 'estimate') FROM generations g
                              WHERE g.id = charges.generation_id)
           WHERE state = 'reserved' AND created_at <= ? AND generation_id IN
                 (SELECT id FROM generations WHERE status = 'succeeded')""",
        (now, cutoff),
    )
    released = await database.write(
        """UPDATE charges SET state = 'released', amount = 0, settled_at = ?
           WHERE state = 'reserved' AND created_at <= ?""",
        (now, cutoff),
    )
    return committed.rowcount, released.rowcount


async def committed_since(database: Database, guild_id: int, user_id: int, since: float) -> float:
    row = await database.fetchone(
        """SELECT COALESCE(SUM(amount), 0) FROM charges WHERE guild_id = ?
           AND user_id = ? AND state = 'committed' AND created_at >= ?""",
        (guild_id, user_id, since),
    )
    return float(row[0]) if row else 0.0
