"""The SQLite connection and the migrations runner."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from urllib.parse import quote

import aiosqlite

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 5000
# NORMAL in WAL mode: a commit survives the process crashing, not the power failing.
# FULL syncs the WAL at every commit; measured at about a quarter of the ledger's
# throughput when used for every write, so only `durable` writes use it.
SYNCHRONOUS_DEFAULT = "NORMAL"
SYNCHRONOUS_DURABLE = "FULL"


def migrations_dir() -> Path:
    """Migrations ship beside the package when installed, at the repo root otherwise."""
    package = Path(__file__).resolve().parent.parent  # bot/
    for candidate in (package / "migrations", package.parent / "migrations"):
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


def latest_version(directory: Path | None = None) -> int:
    """The schema version this code migrates a database to."""
    numbered = _numbered(directory or migrations_dir())
    return numbered[-1][0] if numbered else 0


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

    async def write(
        self, sql: str, params: Sequence[object] = (), *, durable: bool = False
    ) -> aiosqlite.Cursor:
        """One statement in its own commit. `durable`: the commit reaches the disk before
        this returns (synchronous=FULL for it alone), so it survives a power cut."""
        async with self._lock:
            if not durable:
                return await self.conn.execute(sql, params)
            await self.conn.execute(f"PRAGMA synchronous = {SYNCHRONOUS_DURABLE}")
            try:
                return await self.conn.execute(sql, params)
            finally:
                await self.conn.execute(f"PRAGMA synchronous = {SYNCHRONOUS_DEFAULT}")

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

    async def ping(self) -> None:
        """A trivial read: raises when the database cannot be used."""
        await self.fetchone("SELECT 1")

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
        await conn.execute(f"PRAGMA synchronous = {SYNCHRONOUS_DEFAULT}")
        await migrate(conn)
    except BaseException:
        await conn.close()  # its worker thread is not a daemon: left open, exit would hang
        raise
    return Database(conn)


async def connect_read_only(path: Path | str) -> Database:
    """Open an existing database for reading only, without migrating it: a look at a
    database another process owns (a running bot, a backup copy)."""
    uri = f"file:{quote(str(path))}?mode=ro"
    conn = await aiosqlite.connect(uri, uri=True, isolation_level=None)
    try:
        conn.row_factory = aiosqlite.Row
        await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS:d}")
    except BaseException:
        await conn.close()
        raise
    return Database(conn)
