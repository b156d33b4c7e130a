"""Queries on allowances (server default, role and member overrides), usage resets and
blocks. Writes take the open transaction's connection: the caller audits in it too."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import aiosqlite

from bot.db.connection import Database

# Fixed table and column names for the two kinds of override (never user input).
_OVERRIDES = {"member": ("member_quotas", "user_id"), "role": ("role_quotas", "role_id")}


@dataclass(frozen=True)
class BlockRow:
    reason: str | None
    blocked_by: int
    at: float


@dataclass(frozen=True)
class Terms:
    """What decides a member's allowance in a server, and the server's budget."""

    guild_default: tuple[float, str] | None  # the server's own (credits, period)
    member: float | None  # the member's own allowance
    role: float | None  # the highest allowance among the member's roles
    reset_at: float | None  # when an admin last cleared the member's usage
    budget: float | None  # the operator's figure for the server


async def terms(database: Database, guild_id: int, user_id: int, role_ids: Sequence[int]) -> Terms:
    """Every figure a reservation checks, in one trip to the database (each reservation
    needs them all, so one read instead of five)."""
    marks = ",".join("?" * len(role_ids))
    row = await database.fetchone(
        f"""SELECT q.credits, q.period,
                  (SELECT credits FROM member_quotas m
                   WHERE m.guild_id = k.guild_id AND m.user_id = k.user_id),
                  (SELECT MAX(credits) FROM role_quotas r
                   WHERE r.guild_id = k.guild_id AND r.role_id IN ({marks})),
                  (SELECT reset_at FROM usage_resets u
                   WHERE u.guild_id = k.guild_id AND u.user_id = k.user_id),
                  (SELECT credits FROM server_budgets b WHERE b.guild_id = k.guild_id)
           FROM (SELECT ? AS guild_id, ? AS user_id) AS k
           LEFT JOIN guild_quotas q ON q.guild_id = k.guild_id""",  # noqa: S608 - placeholders only
        (*role_ids, guild_id, user_id),
    )
    assert row is not None
    default = None if row[0] is None else (float(row[0]), str(row[1]))
    member, role, reset_at, budget = (None if v is None else float(v) for v in row[2:])
    return Terms(default, member, role, reset_at, budget)


async def guild_default(database: Database, guild_id: int) -> tuple[float, str] | None:
    row = await database.fetchone(
        "SELECT credits, period FROM guild_quotas WHERE guild_id = ?", (guild_id,)
    )
    return (float(row[0]), str(row[1])) if row else None


async def override(database: Database, kind: str, guild_id: int, key: int) -> float | None:
    table, column = _OVERRIDES[kind]
    row = await database.fetchone(
        f"SELECT credits FROM {table} WHERE guild_id = ? AND {column} = ?",  # noqa: S608 - fixed names
        (guild_id, key),
    )
    return None if row is None else float(row[0])


async def set_override(
    conn: aiosqlite.Connection, kind: str, guild_id: int, key: int, credits: float | None
) -> None:
    """Set (or with None remove) a member's or a role's own allowance."""
    table, column = _OVERRIDES[kind]
    if credits is None:
        await conn.execute(
            f"DELETE FROM {table} WHERE guild_id = ? AND {column} = ?",  # noqa: S608 - fixed names
            (guild_id, key),
        )
        return
    await conn.execute(
        f"""INSERT INTO {table} (guild_id, {column}, credits) VALUES (?, ?, ?)
            ON CONFLICT (guild_id, {column}) DO UPDATE SET credits = excluded.credits""",  # noqa: S608
        (guild_id, key, credits),
    )


async def set_guild_default(
    conn: aiosqlite.Connection, guild_id: int, credits: float, period: str
) -> None:
    await conn.execute(
        """INSERT INTO guild_quotas (guild_id, credits, period) VALUES (?, ?, ?)
           ON CONFLICT (guild_id) DO UPDATE
           SET credits = excluded.credits, period = excluded.period""",
        (guild_id, credits, period),
    )


async def usage_reset_at(database: Database, guild_id: int, user_id: int) -> float | None:
    row = await database.fetchone(
        "SELECT reset_at FROM usage_resets WHERE guild_id = ? AND user_id = ?",
        (guild_id, user_id),
    )
    return None if row is None else float(row[0])


async def set_usage_reset(
    conn: aiosqlite.Connection, guild_id: int, user_id: int, at: float
) -> None:
    await conn.execute(
        """INSERT INTO usage_resets (guild_id, user_id, reset_at) VALUES (?, ?, ?)
           ON CONFLICT (guild_id, user_id) DO UPDATE SET reset_at = excluded.reset_at""",
        (guild_id, user_id, at),
    )


async def block_of(database: Database, guild_id: int, user_id: int) -> BlockRow | None:
    row = await database.fetchone(
        "SELECT reason, blocked_by, at FROM blocks WHERE guild_id = ? AND user_id = ?",
        (guild_id, user_id),
    )
    return BlockRow(row[0], row[1], row[2]) if row else None


async def set_block(
    conn: aiosqlite.Connection,
    guild_id: int,
    user_id: int,
    reason: str | None,
    actor_id: int,
    at: float,
) -> None:
    await conn.execute(
        """INSERT INTO blocks (guild_id, user_id, reason, blocked_by, at)
           VALUES (?, ?, ?, ?, ?)
           ON CONFLICT (guild_id, user_id) DO UPDATE SET reason = excluded.reason,
               blocked_by = excluded.blocked_by, at = excluded.at""",
        (guild_id, user_id, reason, actor_id, at),
    )


async def delete_block(conn: aiosqlite.Connection, guild_id: int, user_id: int) -> None:
    await conn.execute("DELETE FROM blocks WHERE guild_id = ? AND user_id = ?", (guild_id, user_id))


async def overrides(database: Database, kind: str, guild_id: int) -> dict[int, float]:
    """Every member's (`kind` "member") or role's ("role") own allowance in a server."""
    table, column = _OVERRIDES[kind]
    rows = await database.fetchall(
        f"SELECT {column}, credits FROM {table} WHERE guild_id = ? ORDER BY {column}",  # noqa: S608 - fixed names
        (guild_id,),
    )
    return {int(r[0]): float(r[1]) for r in rows}


async def usage_resets(database: Database, guild_id: int) -> dict[int, float]:
    """When each member's usage was last cleared in a server, by user id."""
    rows = await database.fetchall(
        "SELECT user_id, reset_at FROM usage_resets WHERE guild_id = ? ORDER BY user_id",
        (guild_id,),
    )
    return {int(r[0]): float(r[1]) for r in rows}


async def blocks(database: Database, guild_id: int) -> dict[int, BlockRow]:
    """Every member blocked in a server, by user id."""
    rows = await database.fetchall(
        """SELECT user_id, reason, blocked_by, at FROM blocks WHERE guild_id = ?
           ORDER BY user_id""",
        (guild_id,),
    )
    return {int(r[0]): BlockRow(r[1], r[2], r[3]) for r in rows}
