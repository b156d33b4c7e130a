"""Queries on `generations`: every edit attempt that reached the API."""

from __future__ import annotations

import time
from dataclasses import dataclass

from bot.db.connection import Database
from bot.images import InputImage
from bot.params import EditParams


@dataclass(frozen=True)
class NewGeneration:
    guild_id: int | None
    channel_id: int
    user_id: int
    source: str
    model: str
    params: EditParams
    seed_explicit: bool
    input_mode: str
    input: InputImage
    parent_id: int | None = None
    interaction_id: int | None = None
    job_id: int | None = None


@dataclass(frozen=True)
class Generation:
    id: int
    guild_id: int | None
    channel_id: int
    user_id: int
    parent_id: int | None
    source: str
    model: str
    prompt: str
    seed: int
    seed_explicit: int
    guidance: float
    steps: int
    aspect_ratio: str
    output_format: str
    quality: int
    input_url: str
    input_filename: str | None
    input_content_type: str | None
    input_size: int | None
    input_width: int | None
    input_height: int | None
    status: str
    failure_reason: str | None
    api_time_s: float | None
    cost: float | None
    cost_source: str | None
    remaining_credits: float | None
    result_channel_id: int | None
    result_message_id: int | None
    result_url: str | None
    result_path: str | None
    created_at: float
    finished_at: float | None
    input_mode: str  # url or base64: how the input reached the API
    input_attachment_id: int | None
    interaction_id: int | None
    job_id: int | None
    api_seed: int | None
    api_request_id: str | None
    result_reencoded: int  # 1: re-encoded as JPEG to fit the server's upload limit
    result_attachment_id: int | None
    measured_cost: float | None
    input_converted_from: str | None  # e.g. "HEIC": the input was converted for the API

    @property
    def input(self) -> InputImage:
        """The input as it was when this edit ran (its URL may have expired since)."""
        return InputImage(
            url=self.input_url,
            filename=self.input_filename or "input",
            content_type=self.input_content_type,
            size=self.input_size or 0,
            width=self.input_width,
            height=self.input_height,
        )

    @property
    def params(self) -> EditParams:
        return EditParams(
            prompt=self.prompt,
            seed=self.seed,
            guidance=self.guidance,
            steps=self.steps,
            aspect_ratio=self.aspect_ratio,
            output_format=self.output_format,
            quality=self.quality,
        )


_GENERATION_COLUMNS = ", ".join(Generation.__dataclass_fields__)


async def insert(database: Database, new: NewGeneration) -> int:
    p = new.params
    cur = await database.write(
        """INSERT INTO generations (guild_id, channel_id, user_id, parent_id, source,
               interaction_id, model, prompt, seed, seed_explicit, guidance, steps, aspect_ratio,
               output_format, quality, input_mode, input_url, input_attachment_id,
               input_filename, input_content_type, input_size, input_width, input_height,
               job_id, created_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        (
            new.guild_id,
            new.channel_id,
            new.user_id,
            new.parent_id,
            new.source,
            new.interaction_id,
            new.model,
            p.prompt,
            p.seed,
            int(new.seed_explicit),
            p.guidance,
            p.steps,
            p.aspect_ratio,
            p.output_format,
            p.quality,
            new.input_mode,
            new.input.url,
            new.input.attachment_id,
            new.input.filename,
            new.input.content_type,
            new.input.size,
            new.input.width,
            new.input.height,
            new.job_id,
            time.time(),
        ),
    )
    assert cur.lastrowid is not None
    return cur.lastrowid


async def mark_succeeded(
    database: Database,
    generation_id: int,
    *,
    api_seed: int | None,
    api_time_s: float,
    request_id: str | None,
    cost: float | None,
    cost_source: str | None,
    remaining_credits: float | None,
    reencoded: bool,
    measured_cost: float | None = None,
    converted_from: str | None = None,
) -> None:
    await database.write(
        """UPDATE generations SET status = 'succeeded', api_seed = ?, api_time_s = ?,
               api_request_id = ?, cost = ?, cost_source = ?, remaining_credits = ?,
               result_reencoded = ?, measured_cost = COALESCE(?, measured_cost),
               input_converted_from = ?, finished_at = ?
           WHERE id = ?""",
        (
            api_seed,
            api_time_s,
            request_id,
            cost,
            cost_source,
            remaining_credits,
            int(reencoded),
            measured_cost,
            converted_from,
            time.time(),
            generation_id,
        ),
    )


async def mark_failed(database: Database, generation_id: int, reason: str) -> None:
    await database.write(
        """UPDATE generations SET status = 'failed', failure_reason = ?, finished_at = ?
           WHERE id = ? AND status = 'pending'""",
        (reason[:500], time.time(), generation_id),
    )


async def chain_step(database: Database, generation_id: int) -> int:
    """1 for an edit of an upload, 2 for an edit of that result, and so on."""
    row = await database.fetchone(
        """WITH RECURSIVE chain(id, parent_id, depth) AS (
               SELECT id, parent_id, 1 FROM generations WHERE id = ?
               UNION ALL
               SELECT g.id, g.parent_id, chain.depth + 1
               FROM generations g JOIN chain ON g.id = chain.parent_id
               WHERE chain.depth < 10000
           )
           SELECT MAX(depth) FROM chain""",
        (generation_id,),
    )
    return int(row[0]) if row and row[0] is not None else 1


async def history(
    database: Database, guild_id: int, user_id: int, *, limit: int, offset: int = 0
) -> list[Generation]:
    """A member's edits in one server, newest first."""
    rows = await database.fetchall(
        f"""SELECT {_GENERATION_COLUMNS} FROM generations
            WHERE guild_id = ? AND user_id = ?
            ORDER BY id DESC LIMIT ? OFFSET ?""",  # noqa: S608 - fixed columns
        (guild_id, user_id, limit, offset),
    )
    return [Generation(**dict(r)) for r in rows]


async def of_server(database: Database, guild_id: int) -> list[Generation]:
    """Every edit made in a server, oldest first."""
    rows = await database.fetchall(
        f"""SELECT {_GENERATION_COLUMNS} FROM generations WHERE guild_id = ?
            ORDER BY id""",  # noqa: S608 - fixed columns
        (guild_id,),
    )
    return [Generation(**dict(r)) for r in rows]


async def history_count(database: Database, guild_id: int, user_id: int) -> int:
    row = await database.fetchone(
        "SELECT COUNT(*) FROM generations WHERE guild_id = ? AND user_id = ?",
        (guild_id, user_id),
    )
    return int(row[0]) if row else 0


async def fail_interrupted(database: Database) -> int:
    """At start-up no call is running: any row still pending was interrupted."""
    cur = await database.write(
        """UPDATE generations SET status = 'failed', failure_reason = 'interrupted',
               finished_at = ? WHERE status = 'pending'""",
        (time.time(),),
    )
    return cur.rowcount


async def get(database: Database, generation_id: int) -> Generation | None:
    cur = await database.execute(
        f"SELECT {_GENERATION_COLUMNS} FROM generations WHERE id = ?",  # noqa: S608 - fixed columns
        (generation_id,),
    )
    row = await cur.fetchone()
    return Generation(**dict(row)) if row else None


async def count_by_status(database: Database) -> dict[str, int]:
    cur = await database.execute("SELECT status, COUNT(*) FROM generations GROUP BY status")
    return {status: count for status, count in await cur.fetchall()}


async def of_job(database: Database, job_id: int) -> Generation | None:
    """The edit a job ran, if it got as far as the API."""
    rows = await database.fetchall(
        f"""SELECT {_GENERATION_COLUMNS} FROM generations WHERE job_id = ?
            ORDER BY id DESC LIMIT 1""",  # noqa: S608 - fixed columns
        (job_id,),
    )
    return Generation(**dict(rows[0])) if rows else None


async def set_result_path(database: Database, generation_id: int, path: str | None) -> None:
    """Where a paid-for result's bytes are kept until Discord has them (None: gone)."""
    await database.write(
        "UPDATE generations SET result_path = ? WHERE id = ?", (path, generation_id)
    )


async def result_path(database: Database, generation_id: int) -> str | None:
    row = await database.fetchone(
        "SELECT result_path FROM generations WHERE id = ?", (generation_id,)
    )
    return row[0] if row else None


async def kept_before(database: Database, cutoff: float) -> list[tuple[int, str]]:
    """Results still kept on disk that finished before `cutoff`."""
    rows = await database.fetchall(
        """SELECT id, result_path FROM generations
           WHERE result_path IS NOT NULL AND finished_at < ?""",
        (cutoff,),
    )
    return [(int(r[0]), str(r[1])) for r in rows]


async def set_measured_cost(database: Database, generation_id: int, cost: float) -> None:
    """What the call was measured to cost (learned from), known when its gap closed."""
    await database.write(
        "UPDATE generations SET measured_cost = ? WHERE id = ?", (cost, generation_id)
    )


async def kept_paths(database: Database) -> list[str]:
    """Every result file a generation still points at."""
    rows = await database.fetchall(
        "SELECT result_path FROM generations WHERE result_path IS NOT NULL"
    )
    return [str(r[0]) for r in rows]


async def observed_costs(database: Database, model: str, limit: int) -> list[float]:
    """The latest costs that were measured (not estimated), oldest first."""
    rows = await database.fetchall(
        """SELECT measured_cost FROM generations
           WHERE model = ? AND measured_cost IS NOT NULL
           ORDER BY id DESC LIMIT ?""",
        (model, limit),
    )
    return [float(r[0]) for r in reversed(rows)]


async def result_message_of_interaction(database: Database, interaction_id: int) -> int | None:
    """The message that shows the result of the edit an interaction asked for."""
    row = await database.fetchone(
        "SELECT result_message_id FROM generations WHERE interaction_id = ?", (interaction_id,)
    )
    return None if row is None or row[0] is None else int(row[0])
