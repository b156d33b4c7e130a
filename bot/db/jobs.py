"""Queries on `jobs`: every edit waits in the queue as a row, so a crash loses nothing."""

from __future__ import annotations

import time
from dataclasses import dataclass

from bot.db.connection import Database


@dataclass(frozen=True)
class JobRow:
    id: int
    state: str  # queued, running, done, failed, cancelled
    request: str  # JSON, see bot.jobs
    reply_to_message_id: int | None


async def add(
    database: Database,
    *,
    guild_id: int | None,
    channel_id: int,
    user_id: int,
    request: str,
    reply_to_message_id: int | None,
) -> int:
    cur = await database.write(
        """INSERT INTO jobs (guild_id, channel_id, user_id, request, reply_to_message_id,
               created_at) VALUES (?, ?, ?, ?, ?, ?)""",
        (guild_id, channel_id, user_id, request, reply_to_message_id, time.time()),
    )
    assert cur.lastrowid is not None
    return cur.lastrowid


async def mark_running(database: Database, job_id: int) -> None:
    """Durable: after a power cut the job must still read 'running' (interrupted, refunded),
    never 'queued', which start-up would run again: a second API call."""
    await database.write(
        "UPDATE jobs SET state = 'running', started_at = ? WHERE id = ?",
        (time.time(), job_id),
        durable=True,
    )


async def mark_finished(database: Database, job_id: int, state: str) -> None:
    await database.write(
        """UPDATE jobs SET state = ?, finished_at = ?
           WHERE id = ? AND state IN ('queued', 'running')""",
        (state, time.time(), job_id),
    )


async def mark_many_finished(database: Database, job_ids: list[int], state: str) -> None:
    """One statement for many jobs (a shutdown may cancel thousands)."""
    if not job_ids:
        return
    marks = ",".join("?" * len(job_ids))
    await database.write(
        f"""UPDATE jobs SET state = ?, finished_at = ?
            WHERE id IN ({marks}) AND state IN ('queued', 'running')""",  # noqa: S608 - placeholders only
        (state, time.time(), *job_ids),
    )


async def unfinished(database: Database) -> list[JobRow]:
    rows = await database.fetchall(
        """SELECT id, state, request, reply_to_message_id FROM jobs
           WHERE state IN ('queued', 'running') ORDER BY id"""
    )
    return [JobRow(r[0], r[1], r[2], r[3]) for r in rows]


async def request_of(database: Database, job_id: int) -> str | None:
    """A job's request as it was written down (JSON, see bot.jobs); None without its row."""
    row = await database.fetchone("SELECT request FROM jobs WHERE id = ?", (job_id,))
    return None if row is None else str(row[0])


async def state_of(database: Database, job_id: int) -> str | None:
    row = await database.fetchone("SELECT state FROM jobs WHERE id = ?", (job_id,))
    return None if row is None else str(row[0])


@dataclass(frozen=True)
class JobState:
    id: int
    user_id: int
    state: str


async def states(database: Database) -> list[JobState]:
    """Every job's member and state, oldest first."""
    rows = await database.fetchall("SELECT id, user_id, state FROM jobs ORDER BY id")
    return [JobState(int(r[0]), int(r[1]), str(r[2])) for r in rows]


async def count_by_state(database: Database) -> dict[str, int]:
    rows = await database.fetchall("SELECT state, COUNT(*) FROM jobs GROUP BY state")
    return {str(r[0]): int(r[1]) for r in rows}
