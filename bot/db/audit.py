"""Queries on `audit_log`: every admin change, written in the change's own transaction."""

from __future__ import annotations

from dataclasses import dataclass

import aiosqlite

from bot.db.connection import Database


@dataclass(frozen=True)
class AuditEntry:
    id: int
    guild_id: int
    actor_id: int
    action: str
    target: str | None
    before: str | None
    after: str | None
    at: float


async def insert(
    conn: aiosqlite.Connection,
    *,
    guild_id: int,
    actor_id: int,
    action: str,
    target: str | None,
    before: str,
    after: str,
    at: float,
) -> None:
    await conn.execute(
        """INSERT INTO audit_log (guild_id, actor_id, action, target, before, after, at)
           VALUES (?, ?, ?, ?, ?, ?, ?)""",
        (guild_id, actor_id, action, target, before, after, at),
    )


async def latest(database: Database, guild_id: int, limit: int) -> list[AuditEntry]:
    """The latest admin changes in one server, newest first."""
    rows = await database.fetchall(
        """SELECT id, guild_id, actor_id, action, target, before, after, at
           FROM audit_log WHERE guild_id = ? ORDER BY id DESC LIMIT ?""",
        (guild_id, limit),
    )
    return [AuditEntry(*r) for r in rows]


async def latest_everywhere(database: Database, limit: int) -> list[AuditEntry]:
    """The latest admin changes in every server and bot-wide, newest first."""
    rows = await database.fetchall(
        """SELECT id, guild_id, actor_id, action, target, before, after, at
           FROM audit_log ORDER BY id DESC LIMIT ?""",
        (limit,),
    )
    return [AuditEntry(*r) for r in rows]
