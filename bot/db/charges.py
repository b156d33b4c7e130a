"""Queries on `charges`: one row per edit that passed the quota check. Every money
movement is one statement (or one transaction):

reserved (the expected cost, before the call) -> held (the real cost, once the API
answered: counted as used, but not yet charged) -> committed (Discord has the result) or
released (a failure, or a result that could never be delivered, refunded when its kept
copy expires)."""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass

import aiosqlite

from bot.db.connection import Database

EPSILON = 1e-9
# `server_spend` (kept by triggers on `charges`, migrations/0011) counts per server and UTC
# day, in integer nano-credits.
DAY_S = 86400
NANO_PER_CREDIT = 1e9


# Money that counts against an allowance: charged, or held for a result awaiting delivery.
SPENT = "('committed', 'held')"
# A generation whose result Discord has.
DELIVERED = "SELECT id FROM generations WHERE result_message_id IS NOT NULL"


@dataclass(frozen=True)
class Usage:
    used: float  # committed, plus held for results awaiting delivery
    held: float  # reserved by edits still running


async def usage(database: Database, guild_id: int, user_id: int, since: float) -> Usage:
    row = await database.fetchone(
        f"""SELECT COALESCE(SUM(CASE WHEN state IN {SPENT} THEN amount END), 0),
                  COALESCE(SUM(CASE WHEN state = 'reserved' THEN reserved END), 0)
           FROM charges WHERE guild_id = ? AND user_id = ? AND created_at >= ?""",  # noqa: S608
        (guild_id, user_id, since),
    )
    assert row is not None
    return Usage(float(row[0]), float(row[1]))


def spend_day(since: float) -> int:
    """The first `server_spend` day of a budget window starting at `since`: a UTC midnight
    (bot/periods.py), or 0 for "none". Anything else could not be counted in whole days."""
    day = math.floor(since / DAY_S)
    if day * DAY_S != since:
        raise ValueError(f"a budget window starts at a UTC midnight, not at {since!r}")
    return day


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
    plus `amount`, stays within `allowance`, and the server's since `budget_since` (a UTC
    midnight, or 0) within `budget`; the checks and the insert are one statement. Returns
    the charge id, or None when refused.

    The member's sum reads their own charges (an admin's reset can start it mid-day); the
    server's reads its day totals, which triggers keep with every charge."""
    cur = await database.write(
        f"""INSERT INTO charges (guild_id, user_id, state, reserved, created_at)
           SELECT ?, ?, 'reserved', ?, ?
           WHERE (SELECT COALESCE(SUM(CASE WHEN state IN {SPENT} THEN amount
                                           ELSE reserved END), 0)
                  FROM charges
                  WHERE guild_id = ? AND user_id = ? AND state != 'released'
                    AND created_at >= ?) + ? <= ? + ?
             AND (SELECT COALESCE(SUM(spent + held), 0) FROM server_spend
                  WHERE guild_id = ? AND day >= ?) / ? + ? <= ? + ?""",  # noqa: S608
        (
            guild_id, user_id, amount, now,
            guild_id, user_id, since, amount, allowance, EPSILON,
            guild_id, spend_day(budget_since), NANO_PER_CREDIT, amount, budget, EPSILON,
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
    """Charge a reservation at once (no result to deliver: the benchmark's ledger load)."""
    cur = await database.write(
        """UPDATE charges SET state = 'committed', amount = ?, cost_source = ?,
               settled_at = ? WHERE id = ? AND state = 'reserved'""",
        (max(0.0, amount), source, now, charge_id),
    )
    return cur.rowcount == 1


async def hold(database: Database, charge_id: int, amount: float, source: str) -> bool:
    """The API answered: hold the real cost until Discord has the result."""
    cur = await database.write(
        """UPDATE charges SET state = 'held', amount = ?, cost_source = ?
           WHERE id = ? AND state = 'reserved'""",
        (max(0.0, amount), source, charge_id),
    )
    return cur.rowcount == 1


async def commit_delivered(conn: aiosqlite.Connection, generation_id: int, now: float) -> int:
    """Discord has the result: charge what was held. Takes the transaction that records
    the delivery, so the two never part."""
    cur = await conn.execute(
        """UPDATE charges SET state = 'committed', settled_at = ?
           WHERE generation_id = ? AND state = 'held'""",
        (now, generation_id),
    )
    return cur.rowcount


async def release(database: Database, charge_id: int, now: float) -> bool:
    cur = await database.write(
        """UPDATE charges SET state = 'released', amount = 0, settled_at = ?
           WHERE id = ? AND state = 'reserved'""",
        (now, charge_id),
    )
    return cur.rowcount == 1


async def release_generation(database: Database, generation_id: int, now: float) -> int:
    """Give back whatever an undelivered edit holds; returns the rows changed."""
    cur = await database.write(
        """UPDATE charges SET state = 'released', amount = 0, settled_at = ?
           WHERE generation_id = ? AND state IN ('reserved', 'held')""",
        (now, generation_id),
    )
    return cur.rowcount


async def release_expired(
    database: Database, cutoff: float, now: float, *, keep: Collection[int] = ()
) -> list[int]:
    """Refund what is held for results never delivered that finished before `cutoff` (their
    kept copies expire), except the generations in `keep` (being posted right now).
    Returns the generations refunded."""
    async with database.transaction() as conn:
        rows = list(
            await conn.execute_fetchall(
                """SELECT c.id, c.generation_id FROM charges c
                   LEFT JOIN generations g ON g.id = c.generation_id
                   WHERE c.state = 'held' AND g.result_message_id IS NULL
                     AND COALESCE(g.finished_at, c.created_at) < ?""",
                (cutoff,),
            )
        )
        rows = [r for r in rows if r[1] not in keep]
        await conn.executemany(
            """UPDATE charges SET state = 'released', amount = 0, settled_at = ?
               WHERE id = ? AND state = 'held'""",
            [(now, r[0]) for r in rows],
        )
    return [int(r[1]) for r in rows if r[1] is not None]


@dataclass(frozen=True)
class Settled:
    """What start-up made of the money a crash left in flight."""

    held: int  # the edit succeeded: its cost is held until its result is delivered
    committed: int  # its result had reached Discord
    released: int  # it never finished: refunded


async def settle_stale(database: Database, cutoff: float, now: float) -> Settled:
    """Settle reservations made before `cutoff`: an edit that succeeded holds its recorded
    cost (charged once delivered), one already delivered is charged, the rest released."""
    async with database.transaction() as conn:
        committed = await conn.execute(
            f"""UPDATE charges SET state = 'committed', settled_at = ?,
                   amount = COALESCE(amount, (SELECT COALESCE(g.cost, charges.reserved)
                                              FROM generations g
                                              WHERE g.id = charges.generation_id)),
                   cost_source = COALESCE(cost_source,
                                          (SELECT COALESCE(g.cost_source, 'estimate')
                                           FROM generations g
                                           WHERE g.id = charges.generation_id))
               WHERE (state = 'held' OR state = 'reserved' AND created_at <= ?
                      AND generation_id IN (SELECT id FROM generations
                                            WHERE status = 'succeeded'))
                 AND generation_id IN ({DELIVERED})""",  # noqa: S608
            (now, cutoff),
        )
        held = await conn.execute(
            """UPDATE charges SET state = 'held',
                   amount = (SELECT COALESCE(g.cost, charges.reserved) FROM generations g
                             WHERE g.id = charges.generation_id),
                   cost_source = (SELECT COALESCE(g.cost_source, 'estimate')
                                  FROM generations g WHERE g.id = charges.generation_id)
               WHERE state = 'reserved' AND created_at <= ? AND generation_id IN
                     (SELECT id FROM generations WHERE status = 'succeeded')""",
            (cutoff,),
        )
        released = await conn.execute(
            """UPDATE charges SET state = 'released', amount = 0, settled_at = ?
               WHERE state = 'reserved' AND created_at <= ?""",
            (now, cutoff),
        )
    return Settled(held.rowcount, committed.rowcount, released.rowcount)


async def spent_since(database: Database, guild_id: int, user_id: int, since: float) -> float:
    """What counts against the member's allowance since `since` (charged or held)."""
    row = await database.fetchone(
        f"""SELECT COALESCE(SUM(amount), 0) FROM charges WHERE guild_id = ?
           AND user_id = ? AND state IN {SPENT} AND created_at >= ?""",  # noqa: S608
        (guild_id, user_id, since),
    )
    return float(row[0]) if row else 0.0


async def states_of(database: Database, generation_ids: list[int]) -> dict[int, str]:
    """The charge state of each of these generations (none for an edit never charged)."""
    if not generation_ids:
        return {}
    marks = ", ".join("?" * len(generation_ids))
    rows = await database.fetchall(
        f"SELECT generation_id, state FROM charges WHERE generation_id IN ({marks})",  # noqa: S608
        generation_ids,
    )
    return {int(r[0]): str(r[1]) for r in rows}


@dataclass(frozen=True)
class Charge:
    id: int
    guild_id: int
    user_id: int
    generation_id: int | None
    state: str  # reserved, held, committed, released
    reserved: float
    amount: float | None
    cost_source: str | None
    created_at: float
    settled_at: float | None


_CHARGE_COLUMNS = ", ".join(Charge.__dataclass_fields__)


async def of_server(database: Database, guild_id: int) -> list[Charge]:
    """Every charge made in a server, oldest first."""
    rows = await database.fetchall(
        f"SELECT {_CHARGE_COLUMNS} FROM charges WHERE guild_id = ? ORDER BY id",  # noqa: S608 - fixed columns
        (guild_id,),
    )
    return [Charge(**dict(r)) for r in rows]


async def of_member(database: Database, guild_id: int, user_id: int) -> list[Charge]:
    """A member's charges in one server, oldest first."""
    rows = await database.fetchall(
        f"""SELECT {_CHARGE_COLUMNS} FROM charges WHERE guild_id = ? AND user_id = ?
            ORDER BY id""",  # noqa: S608 - fixed columns
        (guild_id, user_id),
    )
    return [Charge(**dict(r)) for r in rows]
