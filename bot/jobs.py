"""Queued edits as database rows, so a crash or restart loses nothing."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

from bot import db
from bot.db import Database
from bot.images import InputImage
from bot.params import EditParams
from bot.pipeline import EditRequest


def request_to_json(req: EditRequest) -> str:
    data = asdict(req)
    data.pop("job_id", None)
    return json.dumps(data, separators=(",", ":"))


def request_from_json(text: str, job_id: int) -> EditRequest:
    data = json.loads(text)
    data["image"] = InputImage(**data["image"])
    data["params"] = EditParams(**data["params"])
    data["role_ids"] = tuple(data.get("role_ids", ()))
    return EditRequest(**data, job_id=job_id)


@dataclass(frozen=True)
class StoredJob:
    id: int
    state: str
    request: EditRequest
    reply_to_message_id: int | None


async def add(database: Database, req: EditRequest, *, reply_to_message_id: int | None) -> int:
    cur = await database.write(
        """INSERT INTO jobs (guild_id, channel_id, user_id, request, reply_to_message_id,
               created_at) VALUES (?, ?, ?, ?, ?, ?)""",
        (
            req.guild_id,
            req.channel_id,
            req.user_id,
            request_to_json(req),
            reply_to_message_id,
            time.time(),
        ),
    )
    assert cur.lastrowid is not None
    return cur.lastrowid


async def mark_running(database: Database, job_id: int) -> None:
    await database.write(
        "UPDATE jobs SET state = 'running', started_at = ? WHERE id = ?", (time.time(), job_id)
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


async def unfinished(database: Database) -> list[StoredJob]:
    rows = await database.fetchall(
        """SELECT id, state, request, reply_to_message_id FROM jobs
           WHERE state IN ('queued', 'running') ORDER BY id"""
    )
    return [StoredJob(r[0], r[1], request_from_json(r[2], r[0]), r[3]) for r in rows]


async def generation_of_job(database: Database, job_id: int) -> db.Generation | None:
    """The edit a job ran, if it got as far as the API."""
    row = await database.fetchone(
        "SELECT id FROM generations WHERE job_id = ? ORDER BY id DESC LIMIT 1", (job_id,)
    )
    return await db.get_generation(database, int(row[0])) if row else None
