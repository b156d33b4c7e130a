"""Queued edits as database rows, so a crash or restart loses nothing."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields

from bot.db import jobs as job_rows
from bot.db.connection import Database
from bot.images import InputImage
from bot.params import EditParams
from bot.requests import EditRequest


def request_to_json(req: EditRequest) -> str:
    # Field by field rather than dataclasses.asdict, which deep-copies every value: written
    # once for each edit a burst hands over, before the member sees it acknowledged.
    data = _fields_of(req)
    del data["job_id"]
    data["image"] = _fields_of(req.image)
    data["params"] = _fields_of(req.params)
    return json.dumps(data, separators=(",", ":"))


def _fields_of(value: object) -> dict[str, object]:
    return {f.name: getattr(value, f.name) for f in fields(value)}  # type: ignore[arg-type]


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
    return await job_rows.add(
        database,
        guild_id=req.guild_id,
        channel_id=req.channel_id,
        user_id=req.user_id,
        request=request_to_json(req),
        reply_to_message_id=reply_to_message_id,
    )


async def request_of(database: Database, job_id: int) -> EditRequest:
    """The request written down for a job (a waiting job holds none in memory)."""
    text = await job_rows.request_of(database, job_id)
    if text is None:
        raise LookupError(f"job {job_id} has no row")
    return request_from_json(text, job_id)


async def unfinished(database: Database) -> list[StoredJob]:
    return [
        StoredJob(r.id, r.state, request_from_json(r.request, r.id), r.reply_to_message_id)
        for r in await job_rows.unfinished(database)
    ]
