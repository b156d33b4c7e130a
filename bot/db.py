"""The SQLite connection, the migrations runner and the queries on generations."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from bot.images import InputImage
from bot.params import EditParams

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 5000


def migrations_dir() -> Path:
    """Migrations ship beside the package when installed, at the repo root otherwise."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "migrations", here.parent / "migrations"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("migrations directory not found")


def _numbered(directory: Path) -> list[tuple[int, Path]]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        number = path.name.split("_", 1)[0]
        if not number.isdigit():
            raise ValueError(f"migration {path.name} must start with a number")
        found.append((int(number), path))
    numbers = [n for n, _ in found]
    if numbers != list(range(1, len(numbers) + 1)):
        raise ValueError(f"migrations must be numbered 1..N without gaps, got {numbers}")
    return found


async def migrate(conn: aiosqlite.Connection, directory: Path | None = None) -> int:
    """Apply pending migrations, each in its own transaction; returns the schema version."""
    (current,) = await (await conn.execute("PRAGMA user_version")).fetchone()  # type: ignore[misc]
    for number, path in _numbered(directory or migrations_dir()):
        if number <= current:
            continue
        sql = path.read_text(encoding="utf-8")
        # executescript would commit on its own; run statements inside one explicit transaction.
        await conn.execute("BEGIN")
        try:
            for statement in _statements(sql):
                await conn.execute(statement)
            await conn.execute(f"PRAGMA user_version = {number:d}")
            await conn.execute("COMMIT")
        except BaseException:
            await conn.execute("ROLLBACK")
            raise
        log.info("Applied migration %s", path.name)
        current = number
    return current


def _statements(sql: str) -> list[str]:
    """Split a script into complete statements (triggers with inner `;` stay whole)."""
    statements, buffer = [], ""
    for line in sql.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                statements.append(buffer.strip())
            buffer = ""
    if buffer.strip() and not all(
        ln.strip().startswith("--") or not ln.strip() for ln in buffer.splitlines()
    ):
        raise ValueError("migration ends with an incomplete statement")
    return statements


class Database:
    """The bot's one connection, plus a lock that serialises writes.

    Every write goes through `write` or `transaction`, so a statement from one task can
    never land inside (and be rolled back with) another task's open transaction.
    """

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self.conn = conn
        self._lock = asyncio.Lock()

    async def execute(self, sql: str, params: Sequence[object] = ()) -> aiosqlite.Cursor:
        """A read (or a write the caller already serialised)."""
        return await self.conn.execute(sql, params)

    async def fetchone(self, sql: str, params: Sequence[object] = ()) -> aiosqlite.Row | None:
        # One trip to the database thread instead of two (execute, then fetch).
        rows = await self.conn.execute_fetchall(sql, params)
        return next(iter(rows), None)

    async def fetchall(self, sql: str, params: Sequence[object] = ()) -> list[aiosqlite.Row]:
        return list(await self.conn.execute_fetchall(sql, params))

    async def write(self, sql: str, params: Sequence[object] = ()) -> aiosqlite.Cursor:
        async with self._lock:
            return await self.conn.execute(sql, params)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any error."""
        async with self._lock:
            await self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                await self.conn.execute("ROLLBACK")
                raise
            await self.conn.execute("COMMIT")

    async def close(self) -> None:
        await self.conn.close()


async def connect(path: Path | str) -> Database:
    """Open the bot's single connection (WAL, foreign keys, busy timeout) and migrate."""
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = await aiosqlite.connect(str(path), isolation_level=None)
    try:
        conn.row_factory = aiosqlite.Row
        await conn.execute("PRAGMA journal_mode = WAL")
        await conn.execute("PRAGMA foreign_keys = ON")
        await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS:d}")
        await conn.execute("PRAGMA synchronous = NORMAL")
        await migrate(conn)
    except BaseException:
        await conn.close()  # its worker thread is not a daemon: left open, exit would hang
        raise
    return Database(conn)


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


async def insert_generation(database: Database, new: NewGeneration) -> int:
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
) -> None:
    await database.write(
        """UPDATE generations SET status = 'succeeded', api_seed = ?, api_time_s = ?,
               api_request_id = ?, cost = ?, cost_source = ?, remaining_credits = ?,
               result_reencoded = ?, finished_at = ?
           WHERE id = ?""",
        (
            api_seed,
            api_time_s,
            request_id,
            cost,
            cost_source,
            remaining_credits,
            int(reencoded),
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


async def record_delivery(
    database: Database,
    generation_id: int,
    *,
    channel_id: int,
    message_id: int,
    attachment_id: int | None,
    url: str | None,
    is_result: bool = True,
) -> None:
    """Remember a message that shows this generation's image (the result, or a re-post)."""
    async with database.transaction() as conn:
        await conn.execute(
            """INSERT OR REPLACE INTO result_messages
                   (message_id, channel_id, generation_id, attachment_id, url, posted_at)
               VALUES (?, ?, ?, ?, ?, ?)""",
            (message_id, channel_id, generation_id, attachment_id, url, time.time()),
        )
        if is_result:
            await conn.execute(
                """UPDATE generations SET result_channel_id = ?, result_message_id = ?,
                       result_attachment_id = ?, result_url = ?
                   WHERE id = ?""",
                (channel_id, message_id, attachment_id, url, generation_id),
            )


@dataclass(frozen=True)
class ResultMessage:
    message_id: int
    channel_id: int
    generation_id: int
    url: str | None
    deleted_at: float | None


async def result_message(database: Database, message_id: int) -> ResultMessage | None:
    """The generation a bot message shows, if it is one of ours."""
    row = await database.fetchone(
        """SELECT message_id, channel_id, generation_id, url, deleted_at
           FROM result_messages WHERE message_id = ?""",
        (message_id,),
    )
    return ResultMessage(*row) if row else None


async def mark_message_deleted(database: Database, message_id: int) -> bool:
    cur = await database.write(
        "UPDATE result_messages SET deleted_at = ? WHERE message_id = ? AND deleted_at IS NULL",
        (time.time(), message_id),
    )
    return cur.rowcount == 1


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


async def get_generation(database: Database, generation_id: int) -> Generation | None:
    cur = await database.execute(
        f"SELECT {_GENERATION_COLUMNS} FROM generations WHERE id = ?",  # noqa: S608 - fixed columns
        (generation_id,),
    )
    row = await cur.fetchone()
    return Generation(**dict(row)) if row else None


async def count_by_status(database: Database) -> dict[str, int]:
    cur = await database.execute("SELECT status, COUNT(*) FROM generations GROUP BY status")
    return {status: count for status, count in await cur.fetchall()}


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
