"""The SQLite connection and the migrations runner."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

import aiosqlite

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 5000
# NORMAL in WAL mode: a commit survives the process crashing, not the power failing.
# FULL syncs the WAL at every commit; measured at about a quarter of the ledger's
# throughput when used for every write, so only `durable` writes use it.
SYNCHRONOUS_DEFAULT = "NORMAL"
SYNCHRONOUS_DURABLE = "FULL"
# SQLite's own page cache, in KiB (its default is 2,000): the OS caches the file anyway,
# and the bot's memory must not grow with the jobs table (2,000 queued edits' rows fill
# about 1.5 MB of pages).
PAGE_CACHE_KIB = 512
# The schema's generated columns (migration 0011) need SQLite 3.31 (2020); Python brings
# its own copy of SQLite, and an old build's may be older.
MIN_SQLITE = (3, 31, 0)


class SQLiteTooOld(RuntimeError):
    """This Python's SQLite cannot hold the bot's schema."""


def sqlite_too_old() -> str | None:
    """Why this Python's SQLite cannot hold the bot's database, or None when it can."""
    if sqlite3.sqlite_version_info >= MIN_SQLITE:
        return None
    return (
        f"This Python's SQLite is {sqlite3.sqlite_version}; the bot's database needs SQLite "
        f"{MIN_SQLITE[0]}.{MIN_SQLITE[1]} or newer: run the bot with a newer Python build "
        "(or its container image)"
    )


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


@dataclass
class _Queued:
    """A single-statement write waiting for the next group commit."""

    sql: str
    params: Sequence[object]
    done: asyncio.Future[aiosqlite.Cursor]


class Database:
    """The bot's one connection, plus a lock that serialises writes.

    Every write goes through `write` or `transaction`, so a statement from one task can
    never land inside (and be rolled back with) another task's open transaction. Single
    writes queue for the lock and are committed a group at a time (see `write`).
    """

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self.conn = conn
        self._lock = asyncio.Lock()
        self._queued: list[_Queued] = []
        self._committer: asyncio.Task[None] | None = None

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
        """One statement, atomic on its own and committed when this returns. `durable`: the
        commit reaches the disk before this returns (synchronous=FULL for it alone), so it
        survives a power cut.

        Statements written while a commit is under way share the next one (a group
        commit): every commit writes each page it changed to the WAL, and the writes of a
        busy moment change the same few pages (a server's day totals, index leaves). On
        the ledger benchmark that is 2-3x the reserve+commit pairs per second."""
        if durable:
            async with self._lock:
                await self.conn.execute(f"PRAGMA synchronous = {SYNCHRONOUS_DURABLE}")
                try:
                    return await self.conn.execute(sql, params)
                finally:
                    await self.conn.execute(f"PRAGMA synchronous = {SYNCHRONOUS_DEFAULT}")
        queued = _Queued(sql, params, asyncio.get_running_loop().create_future())
        self._queued.append(queued)
        if self._committer is None:
            self._committer = asyncio.create_task(self._commit_queued())
        try:
            return await queued.done
        except asyncio.CancelledError:
            # If its group has not started, it never will (as when a caller was cancelled
            # waiting for the lock); once started, it runs, as any statement handed over.
            if queued in self._queued:
                self._queued.remove(queued)
            raise

    async def _commit_queued(self) -> None:
        """Commit what is queued, a group at a time, until nothing is."""
        try:
            while self._queued:
                async with self._lock:
                    # A caller cancelled since it queued may not have run to leave the
                    # queue yet: its write has not started, so it never does.
                    group = [queued for queued in self._queued if not queued.done.done()]
                    self._queued = []
                    if group:
                        await self._commit_group(group)
        finally:
            self._committer = None
            for queued in self._queued:  # only when cancelled: the loop is closing
                queued.done.cancel()
            self._queued = []

    async def _commit_group(self, group: list[_Queued]) -> None:
        """One trip to the database thread for the whole group; each caller gets its own
        statement's outcome."""
        work = [(queued.sql, queued.params) for queued in group]
        try:
            outcomes = await _on_db_thread(self.conn, lambda raw: _run_group(raw, work))
        except Exception as exc:  # noqa: BLE001 - the whole group failed: each caller hears
            outcomes = [exc] * len(group)
        except BaseException:
            for queued in group:
                queued.done.cancel()
            raise
        for queued, outcome in zip(group, outcomes, strict=True):
            if queued.done.done():  # its caller stopped waiting
                continue
            if isinstance(outcome, Exception):
                queued.done.set_exception(outcome)
            else:
                queued.done.set_result(aiosqlite.Cursor(self.conn, outcome))

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
        if self._committer is not None:
            await asyncio.wait([self._committer])  # what is queued commits first
        await self.conn.close()


T = TypeVar("T")


async def _on_db_thread(conn: aiosqlite.Connection, work: Callable[[sqlite3.Connection], T]) -> T:
    """Run `work` on the connection's own thread, in turn with its queued statements.
    aiosqlite has no public call for this; `_execute` is what each of its own methods
    uses (the version is pinned below 0.23)."""
    return await conn._execute(lambda: work(conn._conn))


def _run_group(
    raw: sqlite3.Connection, work: Sequence[tuple[str, Sequence[object]]]
) -> list[sqlite3.Cursor | Exception]:
    """Run single-statement writes in one transaction (on the database thread). A statement
    that fails undoes itself alone (SQLite's statement rollback) and is its caller's error;
    if the transaction itself is lost (a full disk, an I/O error) or cannot commit, the
    whole group fails, and none of it happened."""
    if len(work) == 1:  # alone: its own commit, as with no groups at all
        sql, params = work[0]
        try:
            return [raw.execute(sql, params)]
        except Exception as exc:  # noqa: BLE001 - its caller's error
            return [exc]
    outcomes: list[sqlite3.Cursor | Exception] = []
    raw.execute("BEGIN IMMEDIATE")
    try:
        for sql, params in work:
            try:
                outcomes.append(raw.execute(sql, params))
            except Exception as exc:
                if not raw.in_transaction:
                    raise  # the transaction went with it
                outcomes.append(exc)
        raw.execute("COMMIT")
    except BaseException:
        if raw.in_transaction:
            raw.execute("ROLLBACK")
        raise
    return outcomes


async def connect(path: Path | str) -> Database:
    """Open the bot's single connection (WAL, foreign keys, busy timeout) and migrate."""
    if (too_old := sqlite_too_old()) is not None:
        raise SQLiteTooOld(too_old)  # before any file is made: a migration would fail half-way
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = await aiosqlite.connect(str(path), isolation_level=None)
    try:
        conn.row_factory = aiosqlite.Row
        await conn.execute("PRAGMA journal_mode = WAL")
        await conn.execute("PRAGMA foreign_keys = ON")
        await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS:d}")
        await conn.execute(f"PRAGMA synchronous = {SYNCHRONOUS_DEFAULT}")
        await conn.execute(f"PRAGMA cache_size = -{PAGE_CACHE_KIB:d}")
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
