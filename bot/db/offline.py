"""The database as the command-line tools see it (`backup`, `restore`, `doctor`), with
the standard library's sqlite3. They may run while the bot has the database open, so
they never migrate it, and read it in one snapshot."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from bot.db.connection import BUSY_TIMEOUT_MS, latest_version


class DatabaseProblem(Exception):
    """The database cannot be used as asked; the text says why (no data in it)."""


@dataclass(frozen=True)
class Summary:
    """What a verified copy holds, for the operator to compare."""

    schema_version: int
    generations: int
    committed_charges: int
    committed_credits: float


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[sqlite3.Connection]:
    """Open an existing database for reading only (never creates or changes it)."""
    if not path.is_file():
        raise DatabaseProblem(f"no database at {path}")
    conn = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS:d}")
        yield conn
    finally:
        conn.close()


def schema_version(conn: sqlite3.Connection) -> int:
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    return int(version)


def integrity_problems(conn: sqlite3.Connection) -> list[str]:
    """What `PRAGMA integrity_check` found; empty when the file is sound."""
    rows = [str(row[0]) for row in conn.execute("PRAGMA integrity_check").fetchall()]
    return [] if rows == ["ok"] else rows


def summary(conn: sqlite3.Connection) -> Summary:
    generations = conn.execute("SELECT COUNT(*) FROM generations").fetchone()[0]
    charges, credits = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(amount), 0) FROM charges WHERE state = 'committed'"
    ).fetchone()
    return Summary(schema_version(conn), int(generations), int(charges), float(credits))


def verify(path: Path, *, expect_version: int | None = None) -> Summary:
    """Prove a file is a sound Kontext database this code can run: integrity, and a
    schema version it knows (`expect_version`: exactly that one)."""
    with read_only(path) as conn:
        try:
            problems = integrity_problems(conn)
            version = schema_version(conn)
        except sqlite3.DatabaseError as exc:
            raise DatabaseProblem(f"{path} is not a readable SQLite database ({exc})") from None
        if problems:
            raise DatabaseProblem(f"{path} failed the integrity check: {problems[0]}")
        if version < 1:
            raise DatabaseProblem(f"{path} is not a Kontext database (schema version 0)")
        if version > latest_version():
            raise DatabaseProblem(
                f"{path} has schema version {version}, newer than this bot's "
                f"{latest_version()}: upgrade the bot first"
            )
        if expect_version is not None and version != expect_version:
            raise DatabaseProblem(f"{path} has schema version {version}, not {expect_version}")
        return summary(conn)


def _copy(source: sqlite3.Connection, target: Path) -> None:
    """SQLite's online backup, in one step: one consistent snapshot of the source, taken
    while the bot goes on writing (WAL lets readers and the writer work at once)."""
    dest = sqlite3.connect(target)
    try:
        source.backup(dest, pages=-1)
        # A self-contained single file, whatever the source's journal mode.
        dest.execute("PRAGMA journal_mode = DELETE")
    finally:
        dest.close()


def backup(source: Path, target: Path) -> Summary:
    """Copy the live database to `target` (which must not exist yet) and verify the copy."""
    if target.exists():
        raise DatabaseProblem(f"{target} already exists: choose a new file name")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    try:
        with read_only(source) as conn:
            version = schema_version(conn)
            _copy(conn, partial)
        found = verify(partial, expect_version=version)
        os.replace(partial, target)  # only a verified copy ever carries the name asked for
    finally:
        partial.unlink(missing_ok=True)
    return found


def restore(source: Path, target: Path, keep_as: Path | None) -> Summary:
    """Replace the database at `target` with the backup `source`, through SQLite (so any
    write-ahead log of the old one is dealt with too). The old one is first copied to
    `keep_as`. The caller makes sure no bot runs meanwhile."""
    found = verify(source)
    if keep_as is not None and target.exists():
        with read_only(target) as old:
            _copy(old, keep_as)
    target.parent.mkdir(parents=True, exist_ok=True)
    dest = sqlite3.connect(target)
    try:
        with read_only(source) as conn:
            conn.backup(dest, pages=-1)
    finally:
        dest.close()
    return verify(target, expect_version=found.schema_version)


def edit_channels(conn: sqlite3.Connection) -> dict[int, list[int]]:
    """For each server, the channels where edits were made (where the bot must post)."""
    rows = conn.execute(
        """SELECT guild_id, channel_id FROM generations WHERE guild_id IS NOT NULL
           GROUP BY guild_id, channel_id ORDER BY guild_id, MAX(id) DESC"""
    ).fetchall()
    found: dict[int, list[int]] = {}
    for guild_id, channel_id in rows:
        found.setdefault(int(guild_id), []).append(int(channel_id))
    return found
