"""`kontext-bot backup` and `restore`, run as the operator runs them (a separate process)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot import db
from bot.db import charges, generations, jobs, offline
from bot.db.connection import latest_version
from bot.in_use import database_in_use, held, lock_path
from tests.harness import Harness
from tests.helpers import read_database
from tests.test_config_cli import run_bot_async
from tests.world import GUILD_ID

EDITS = 50
MEMBERS = tuple(range(6001, 6006))  # 10 edits each: well within the default allowance


def committed(found: list[charges.Charge]) -> dict[int, float]:
    """Committed charges: id -> amount."""
    return {c.id: float(c.amount or 0) for c in found if c.state == "committed"}


async def charges_in(path: Path) -> dict[int, float]:
    """Committed charges in a database file, read from it alone (read only)."""
    return committed(await read_database(path, lambda d: charges.of_server(d, GUILD_ID)))


async def live_charges(h: Harness) -> dict[int, float]:
    return committed(await h.server_charges())


async def cli(cwd: Path, database: Path, *args: str) -> tuple[int, str, str]:
    return await run_bot_async(cwd, *args, DATABASE_PATH=str(database))


@pytest.mark.settings(
    segmind_max_concurrency=8, segmind_rpm=10_000, max_queued_per_user=10, max_inflight_per_user=2
)
async def test_a_backup_taken_during_50_running_edits_restores_every_committed_charge(
    harness: Harness, tmp_path: Path
) -> None:
    h = harness
    h.segmind.delay = 0.6
    live_db = h.settings.database_path
    interactions = [
        await h.edit(f"edit {n}", user_id=MEMBERS[n % len(MEMBERS)]) for n in range(EDITS)
    ]
    await h.discord.wait_for(
        lambda: _at_least(live_charges(h), 8), message="the first charges to be committed"
    )
    before = await live_charges(h)
    copy = tmp_path / "backups" / "kontext-backup.db"
    status, out, err = await cli(tmp_path, live_db, "backup", str(copy))
    after = await live_charges(h)
    assert status == 0, err
    assert "backup written to" in out and "integrity ok" in out
    assert len(after) < EDITS, "the edits were over before the backup: it proves nothing"

    saved = await charges_in(copy)
    # One consistent moment between the two readings: everything committed before the
    # backup started is in it, nothing that was not yet committed when it ended.
    assert before.items() <= saved.items() <= after.items()
    # No charge in the copy without the edit it paid for: one snapshot of both tables.
    paid_for = {
        c.generation_id
        for c in await read_database(copy, lambda d: charges.of_server(d, GUILD_ID))
        if c.state == "committed" and c.generation_id is not None
    }
    edits = await read_database(copy, lambda d: generations.of_server(d, GUILD_ID))
    assert paid_for <= {g.id for g in edits if g.status == "succeeded"}
    with contextlib.closing(sqlite3.connect(copy)) as conn:
        # A property of the file, not of its data: a self-contained copy, with no WAL.
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"

    await h.discord.wait_for(lambda: _all_done(h), 60, message="all 50 edits to be delivered")
    assert len(interactions) == len(await live_charges(h)) == EDITS
    await h.bot.close()

    status, out, err = await cli(tmp_path, live_db, "restore", str(copy))
    assert status == 0, err
    assert f"restored {live_db}" in out
    assert await charges_in(live_db) == saved  # every committed charge, and only those
    kept = next(live_db.parent.glob(f"{live_db.name}.before-restore-*"))
    assert len(await charges_in(kept)) == EDITS  # the database it replaced is kept
    restored = await db.connect(live_db)  # the bot opens it as usual
    await restored.close()
    with offline.read_only(live_db) as conn:
        assert offline.integrity_problems(conn) == []


async def _all_done(h: Harness) -> bool:
    return (await jobs.count_by_state(h.bot.core.database)).get("done") == EDITS


async def _at_least(charges: object, count: int) -> bool:
    return len(await charges) >= count  # type: ignore[misc]


@contextlib.asynccontextmanager
async def lock_holder(database: Path) -> AsyncIterator[int]:
    """Another process holding the database's instance lock, as a running bot does."""
    script = (
        "import fcntl, os, sys, time\n"
        "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "os.write(fd, str(os.getpid()).encode())\n"
        "print('locked', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, str(lock_path(database)), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        assert await asyncio.wait_for(proc.stdout.readline(), 10) == b"locked\n"
        yield proc.pid
    finally:
        proc.kill()
        await proc.wait()


async def make_database(path: Path) -> None:
    database = await db.connect(path)
    await database.close()


async def test_restore_refuses_while_a_bot_holds_the_database(tmp_path: Path) -> None:
    live = tmp_path / "data" / "kontext.db"
    await make_database(live)
    copy = tmp_path / "copy.db"
    assert (await cli(tmp_path, live, "backup", str(copy)))[0] == 0
    original = live.read_bytes()

    async with lock_holder(live) as pid:
        assert database_in_use(live) is not None
        status, out, err = await cli(tmp_path, live, "restore", str(copy))
        assert status == 1
        assert f"a bot (process {pid}) is running on this database" in err
        assert "Stop the bot first" in err
        assert out == ""
        assert live.read_bytes() == original
        assert not list(live.parent.glob("*.before-restore-*"))

    assert database_in_use(live) is None
    status, out, err = await cli(tmp_path, live, "restore", str(copy))
    assert status == 0, err


def test_database_in_use_sees_a_holder_and_frees_itself(tmp_path: Path) -> None:
    live = tmp_path / "kontext.db"
    assert database_in_use(live) is None
    assert database_in_use(live) is None  # checking did not keep the lock
    with held(live):
        assert "a bot is running on this database" in (database_in_use(live) or "")
    assert database_in_use(live) is None


async def test_backup_refuses_a_missing_database_or_an_existing_target(tmp_path: Path) -> None:
    live = tmp_path / "kontext.db"
    status, _, err = await cli(tmp_path, live, "backup", str(tmp_path / "b.db"))
    assert (status, err.strip()) == (1, f"error: no database at {live}")
    await make_database(live)
    taken = tmp_path / "taken.db"
    taken.write_bytes(b"keep me")
    status, _, err = await cli(tmp_path, live, "backup", str(taken))
    assert status == 1 and "already exists" in err
    assert taken.read_bytes() == b"keep me"


async def test_restore_refuses_what_is_not_a_sound_kontext_database(tmp_path: Path) -> None:
    live = tmp_path / "kontext.db"
    await make_database(live)
    original = live.read_bytes()
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    newer = tmp_path / "newer.db"
    with contextlib.closing(sqlite3.connect(newer)) as conn:  # forged: from a future bot
        conn.execute(f"PRAGMA user_version = {latest_version() + 1}")
    for source, reason in (
        (junk, "not a readable SQLite database"),
        (empty, "not a Kontext database"),
        (newer, "upgrade the bot first"),
        (tmp_path / "missing.db", "no database at"),
    ):
        status, _, err = await cli(tmp_path, live, "restore", str(source))
        assert status == 1 and reason in err, (source, err)
        assert "Traceback" not in err
    assert live.read_bytes() == original


async def test_the_lock_file_keeps_the_holders_process_id(tmp_path: Path) -> None:
    live = tmp_path / "kontext.db"
    async with lock_holder(live) as pid:
        assert database_in_use(live) == (
            f"a bot (process {pid}) is running on this database ({lock_path(live)} is locked)"
        )
    assert lock_path(live).read_text() == str(pid)  # checking never truncated it
