"""The SQLite connection, the migrations runner and the generation queries, on real files."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiosqlite
import pytest

from bot import db
from bot.db import audit, connection, generations, messages
from bot.db import credits as credit_readings
from bot.params import build_params
from tests.helpers import (
    forge_lost_transaction_at,
    make_new_generation,
    read_database,
    record_success,
)


async def scalar(conn: aiosqlite.Connection, sql: str) -> object:
    cur = await conn.execute(sql)
    row = await cur.fetchone()
    assert row is not None
    return row[0]


async def tables(conn: aiosqlite.Connection) -> set[str]:
    cur = await conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    return {row[0] for row in await cur.fetchall()}


# ---------------------------------------------------------------------- connect
# The connection's own settings and schema version are PRAGMAs: read as such.


async def test_connect_creates_the_parent_directory(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "kontext.db"
    database = await db.connect(path)
    try:
        assert path.is_file()
    finally:
        await database.close()


async def test_connect_applies_every_migration(conn: db.Database) -> None:
    shipped = sorted(db.migrations_dir().glob("*.sql"))
    assert shipped, "no migrations found"
    assert await scalar(conn.conn, "PRAGMA user_version") == len(shipped)
    assert {"generations", "credit_readings"} <= await tables(conn.conn)


async def test_connect_turns_on_wal_foreign_keys_and_busy_timeout(conn: db.Database) -> None:
    assert await scalar(conn.conn, "PRAGMA journal_mode") == "wal"
    assert await scalar(conn.conn, "PRAGMA foreign_keys") == 1
    assert await scalar(conn.conn, "PRAGMA busy_timeout") == connection.BUSY_TIMEOUT_MS


async def test_foreign_keys_are_enforced(conn: db.Database) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        await credit_readings.add_credit_reading(conn, 10.0, generation_id=999)
    with pytest.raises(sqlite3.IntegrityError):
        await generations.insert(conn, make_new_generation(parent_id=999))


async def test_reconnect_is_idempotent_and_keeps_data(db_path: Path) -> None:
    first = await db.connect(db_path)
    gen_id = await generations.insert(first, make_new_generation())
    version = await scalar(first.conn, "PRAGMA user_version")
    await first.close()

    second = await db.connect(db_path)
    try:
        assert await scalar(second.conn, "PRAGMA user_version") == version
        assert await db.migrate(second.conn) == version
        row = await generations.get(second, gen_id)
        assert row is not None
        assert row.prompt == "make it night"
    finally:
        await second.close()


# ---------------------------------------------------------------------- migrate
# The runner's tests bring their own schema (tables a, b, log): SQL is the only way in.


@pytest.fixture
async def raw(tmp_path: Path) -> AsyncIterator[aiosqlite.Connection]:
    """A bare connection, set up like db.connect's, with no migrations applied."""
    conn = await aiosqlite.connect(str(tmp_path / "m.db"), isolation_level=None)
    try:
        yield conn
    finally:
        await conn.close()


def write_migrations(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(exist_ok=True)
    for name, sql in files.items():
        (directory / name).write_text(sql, encoding="utf-8")
    return directory


async def test_migrate_applies_files_in_order(raw: aiosqlite.Connection, tmp_path: Path) -> None:
    mig = write_migrations(
        tmp_path / "mig",
        {
            # 0002 only works after 0001; the trigger body has inner `;` and must stay whole.
            "0002_fill.sql": "INSERT INTO a (x) VALUES (1);\n"
            "CREATE TRIGGER a_log AFTER INSERT ON a BEGIN\n"
            "    INSERT INTO log (x) VALUES (NEW.x);\n"
            "    INSERT INTO log (x) VALUES (NEW.x * 10);\n"
            "END;\n",
            "0001_create.sql": "-- the first tables\nCREATE TABLE a (x INTEGER);\n"
            "CREATE TABLE log (x INTEGER);\n",
        },
    )
    assert await db.migrate(raw, mig) == 2
    assert await scalar(raw, "PRAGMA user_version") == 2
    await raw.execute("INSERT INTO a (x) VALUES (5)")
    cur = await raw.execute("SELECT x FROM log ORDER BY x")
    assert [r[0] for r in await cur.fetchall()] == [5, 50]


async def test_migrate_applies_only_pending_files(
    raw: aiosqlite.Connection, tmp_path: Path
) -> None:
    mig = write_migrations(tmp_path / "mig", {"0001_a.sql": "CREATE TABLE a (x);\n"})
    assert await db.migrate(raw, mig) == 1
    write_migrations(mig, {"0002_b.sql": "CREATE TABLE b (x);\n"})
    # Re-running 0001 would fail (table a exists): only 0002 may run.
    assert await db.migrate(raw, mig) == 2
    assert {"a", "b"} <= await tables(raw)


async def test_failing_migration_rolls_back_entirely(
    raw: aiosqlite.Connection, tmp_path: Path
) -> None:
    mig = write_migrations(
        tmp_path / "mig",
        {
            "0001_a.sql": "CREATE TABLE a (x);\n",
            "0002_broken.sql": "CREATE TABLE b (x);\nINSERT INTO a (x) VALUES (1);\n"
            "INSERT INTO no_such_table VALUES (1);\n",
        },
    )
    with pytest.raises(sqlite3.OperationalError, match="no_such_table"):
        await db.migrate(raw, mig)
    assert await scalar(raw, "PRAGMA user_version") == 1
    assert "b" not in await tables(raw)
    assert await scalar(raw, "SELECT COUNT(*) FROM a") == 0
    assert not raw.in_transaction


async def test_incomplete_final_statement_is_refused_and_rolled_back(
    raw: aiosqlite.Connection, tmp_path: Path
) -> None:
    mig = write_migrations(
        tmp_path / "mig",
        {"0001_a.sql": "CREATE TABLE a (x);\nCREATE TABLE b (x)\n-- forgot the semicolon\n"},
    )
    with pytest.raises(ValueError, match="incomplete statement"):
        await db.migrate(raw, mig)
    assert await scalar(raw, "PRAGMA user_version") == 0
    assert "a" not in await tables(raw)


@pytest.mark.parametrize(
    "names",
    [
        ["0001_a.sql", "0003_c.sql"],
        ["0002_b.sql"],
        ["0001_a.sql", "0001_again.sql"],
    ],
    ids=["gap", "no-first", "duplicate"],
)
async def test_gaps_in_numbering_are_refused_before_anything_runs(
    raw: aiosqlite.Connection, tmp_path: Path, names: list[str]
) -> None:
    mig = write_migrations(
        tmp_path / "mig", {name: f"CREATE TABLE t{i} (x);\n" for i, name in enumerate(names)}
    )
    with pytest.raises(ValueError, match="without gaps"):
        await db.migrate(raw, mig)
    assert await scalar(raw, "PRAGMA user_version") == 0
    assert await tables(raw) == set()


async def test_migration_name_without_a_number_is_refused(
    raw: aiosqlite.Connection, tmp_path: Path
) -> None:
    mig = write_migrations(tmp_path / "mig", {"initial.sql": "CREATE TABLE a (x);\n"})
    with pytest.raises(ValueError, match="must start with a number"):
        await db.migrate(raw, mig)


# ---------------------------------------------------------------------- generations


async def test_insert_then_get_round_trips_a_pending_generation(conn: db.Database) -> None:
    before = time.time()
    gen_id = await generations.insert(conn, make_new_generation(guild_id=None))
    row = await generations.get(conn, gen_id)
    assert row is not None
    assert row.id == gen_id
    assert row.guild_id is None  # a DM
    assert (row.channel_id, row.user_id, row.source) == (4243, 5001, "slash")
    assert (row.model, row.prompt, row.seed) == ("flux-kontext-dev", "make it night", 1234)
    assert row.status == "pending"
    assert row.failure_reason is None
    assert row.cost is None
    assert row.finished_at is None
    assert before <= row.created_at <= time.time()
    assert row.params == build_params("make it night", seed=1234)
    assert (
        row.guidance,
        row.steps,
        row.aspect_ratio,
        row.output_format,
        row.quality,
        row.seed_explicit,
        row.input_mode,
        row.input_url,
        row.input_attachment_id,
    ) == (
        7.0,
        35,
        "match_input_image",
        "png",
        90,
        1,
        "url",
        "https://cdn.discordapp.com/attachments/1/2/photo.png",
        2,
    )


async def test_get_generation_of_an_unknown_id_is_none(conn: db.Database) -> None:
    assert await generations.get(conn, 12345) is None


async def test_parent_link_is_stored(conn: db.Database) -> None:
    parent = await generations.insert(conn, make_new_generation())
    child = await generations.insert(conn, make_new_generation(parent_id=parent, source="reply"))
    row = await generations.get(conn, child)
    assert row is not None
    assert row.parent_id == parent
    assert row.source == "reply"


async def test_mark_succeeded_records_the_outcome(conn: db.Database) -> None:
    gen_id = await generations.insert(conn, make_new_generation())
    await generations.mark_succeeded(
        conn,
        gen_id,
        api_seed=1234,
        api_time_s=11.5,
        request_id="req-1",
        cost=0.04,
        cost_source="balance_drop",
        remaining_credits=99.96,
        reencoded=True,
    )
    row = await generations.get(conn, gen_id)
    assert row is not None
    assert row.status == "succeeded"
    assert (row.api_time_s, row.cost, row.cost_source) == (11.5, 0.04, "balance_drop")
    assert row.remaining_credits == 99.96
    assert row.finished_at is not None
    assert row.finished_at >= row.created_at
    assert (row.api_seed, row.api_request_id, row.result_reencoded) == (1234, "req-1", 1)


async def test_unknown_cost_source_is_refused_by_the_schema(conn: db.Database) -> None:
    gen_id = await generations.insert(conn, make_new_generation())
    with pytest.raises(sqlite3.IntegrityError):
        await record_success(conn, gen_id, cost_source="guess")


async def test_mark_failed_records_a_truncated_reason(conn: db.Database) -> None:
    gen_id = await generations.insert(conn, make_new_generation())
    await generations.mark_failed(conn, gen_id, "ServerError: " + "x" * 1000)
    row = await generations.get(conn, gen_id)
    assert row is not None
    assert row.status == "failed"
    assert row.failure_reason is not None
    assert row.failure_reason.startswith("ServerError: ")
    assert len(row.failure_reason) == 500
    assert row.finished_at is not None


async def test_mark_failed_never_overwrites_a_finished_generation(conn: db.Database) -> None:
    gen_id = await generations.insert(conn, make_new_generation())
    await record_success(conn, gen_id)
    await generations.mark_failed(conn, gen_id, "late error")
    row = await generations.get(conn, gen_id)
    assert row is not None
    assert row.status == "succeeded"
    assert row.failure_reason is None


async def test_record_delivery_stores_where_the_result_was_posted(conn: db.Database) -> None:
    gen_id = await generations.insert(conn, make_new_generation())
    url = "https://cdn.discordapp.com/attachments/4243/777/kontext-1.png"
    await messages.record_delivery(
        conn, gen_id, channel_id=4243, message_id=777, attachment_id=778, url=url
    )
    row = await generations.get(conn, gen_id)
    assert row is not None
    assert (row.result_message_id, row.result_url) == (777, url)
    assert (row.result_channel_id, row.result_attachment_id) == (4243, 778)


async def test_fail_interrupted_fails_only_pending_rows(conn: db.Database) -> None:
    pending = [await generations.insert(conn, make_new_generation()) for _ in range(2)]
    done = await generations.insert(conn, make_new_generation())
    await record_success(conn, done)
    failed = await generations.insert(conn, make_new_generation())
    await generations.mark_failed(conn, failed, "BadRequest: nope")

    assert await generations.fail_interrupted(conn) == 2

    for gen_id in pending:
        row = await generations.get(conn, gen_id)
        assert row is not None
        assert (row.status, row.failure_reason) == ("failed", "interrupted")
        assert row.finished_at is not None
    done_row = await generations.get(conn, done)
    failed_row = await generations.get(conn, failed)
    assert done_row is not None and failed_row is not None
    assert done_row.status == "succeeded"
    assert (failed_row.status, failed_row.failure_reason) == ("failed", "BadRequest: nope")
    assert await generations.count_by_status(conn) == {"failed": 3, "succeeded": 1}
    assert await generations.fail_interrupted(conn) == 0


async def test_credit_readings_round_trip(conn: db.Database) -> None:
    assert await credit_readings.last_credit_reading(conn) is None
    gen_id = await generations.insert(conn, make_new_generation())
    await credit_readings.add_credit_reading(conn, 100.0, None)
    await credit_readings.add_credit_reading(conn, 99.96, gen_id)
    assert await credit_readings.last_credit_reading(conn) == 99.96


# ---------------------------------------------------------------------- the write lock


async def test_a_write_from_another_task_never_lands_in_an_open_transaction(
    conn: db.Database,
) -> None:
    opened = asyncio.Event()

    async def failing_transaction() -> None:
        async with conn.transaction() as c:
            await audit.insert(
                c, guild_id=1, actor_id=2, action="a", target=None, before="", after="", at=1.0
            )
            opened.set()
            await asyncio.sleep(0.05)  # another task writes meanwhile
            raise RuntimeError("boom")

    async def other_write() -> None:
        await opened.wait()
        await credit_readings.add_credit_reading(conn, 2.0, None)

    results = await asyncio.gather(failing_transaction(), other_write(), return_exceptions=True)
    assert isinstance(results[0], RuntimeError)
    assert results[1] is None
    assert await audit.latest_everywhere(conn, limit=10) == []  # rolled back
    assert [r.remaining for r in await credit_readings.credit_readings(conn)] == [2.0]


async def readings_on_disk(db_path: Path) -> list[float]:
    """The balances committed to the file, as another process would read them."""
    rows = await read_database(db_path, credit_readings.credit_readings)
    return [r.remaining for r in rows]


async def test_writes_at_the_same_moment_share_one_commit_and_a_failing_one_fails_alone(
    conn: db.Database, db_path: Path
) -> None:
    statements: list[str] = []
    await conn.conn.set_trace_callback(statements.append)
    # The 6th refers to a generation that does not exist.
    results = await asyncio.gather(
        *(credit_readings.add_credit_reading(conn, float(n), 999 if n == 6 else None)
          for n in range(1, 11)),
        return_exceptions=True,
    )  # fmt: skip
    await conn.conn.set_trace_callback(None)

    assert [type(r) for r in results] == [type(None)] * 5 + [sqlite3.IntegrityError] + [
        type(None)
    ] * 4
    assert await readings_on_disk(db_path) == [1.0, 2.0, 3.0, 4.0, 5.0, 7.0, 8.0, 9.0, 10.0]
    assert statements.count("COMMIT") == 1


async def test_a_write_that_loses_its_groups_transaction_fails_every_write_in_it(
    conn: db.Database, db_path: Path
) -> None:
    await forge_lost_transaction_at(conn, -1.0)
    results = await asyncio.gather(
        *(credit_readings.add_credit_reading(conn, n, None) for n in (1.0, 2.0, -1.0, 3.0)),
        return_exceptions=True,
    )
    # None of them happened, and none of their callers is told it did.
    assert all(isinstance(r, sqlite3.Error) for r in results)
    assert await readings_on_disk(db_path) == []
    await credit_readings.add_credit_reading(conn, 4.0, None)  # the next group commits
    assert await readings_on_disk(db_path) == [4.0]


async def long_transaction(
    conn: db.Database,
    opened: asyncio.Event,
    finish: asyncio.Event,
    then: Callable[[], None] = lambda: None,
) -> None:
    """Hold a transaction (one audit row) open from `opened` until `finish`; `then` runs
    the moment it has committed and the lock is free."""
    async with conn.transaction() as c:
        await audit.insert(
            c, guild_id=1, actor_id=2, action="a", target=None, before="", after="", at=1.0
        )
        opened.set()
        await finish.wait()
    then()


async def test_a_write_cancelled_before_its_group_starts_never_happens(
    conn: db.Database, db_path: Path
) -> None:
    opened, finish = asyncio.Event(), asyncio.Event()
    holder = asyncio.create_task(long_transaction(conn, opened, finish))
    await opened.wait()
    waiting = asyncio.create_task(credit_readings.add_credit_reading(conn, 1.0, None))
    kept = asyncio.create_task(credit_readings.add_credit_reading(conn, 2.0, None))
    await asyncio.sleep(0)  # both queued behind the transaction
    waiting.cancel()
    finish.set()
    await holder
    await kept
    assert waiting.cancelled()
    assert await readings_on_disk(db_path) == [2.0]
    assert len(await audit.latest_everywhere(conn, limit=10)) == 1


async def test_a_write_cancelled_as_the_lock_is_handed_on_never_happens(
    conn: db.Database, db_path: Path
) -> None:
    """The caller is cancelled in the same step in which the commit before its group ends
    (its group is about to start, its task has not run since): still never written."""
    opened, finish = asyncio.Event(), asyncio.Event()
    queued: list[asyncio.Task[None]] = []

    def cancel_the_caller() -> None:
        queued[0].cancel()  # the lock is free: the next group is due before this caller runs

    holder = asyncio.create_task(long_transaction(conn, opened, finish, then=cancel_the_caller))
    await opened.wait()
    queued.append(asyncio.create_task(credit_readings.add_credit_reading(conn, 1.0, None)))
    kept = asyncio.create_task(credit_readings.add_credit_reading(conn, 2.0, None))
    await asyncio.sleep(0)  # both queued behind the transaction
    finish.set()
    await holder
    await kept
    assert queued[0].cancelled()
    assert await readings_on_disk(db_path) == [2.0]
