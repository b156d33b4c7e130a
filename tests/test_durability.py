"""Power loss: a job's move to 'running' reaches the disk before its API call is sent.

With `synchronous=NORMAL` (the bot's default in WAL mode) a commit is safe from a crash of
the process but not from a power cut: the last commits may vanish. Should the move to
'running' vanish, start-up would find the job still 'queued' and call the API a second
time. So that one write is committed with `synchronous=FULL` (the rest stay NORMAL: FULL
everywhere costs about four times the ledger's throughput, see the README).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.harness import Harness
from tests.test_process import bot_env, send_edit
from tests.world import MEMBER_ID

# Matched in the trace of the statements the bot ran (the test runs no SQL of its own).
RUNNING = "UPDATE jobs SET state = 'running'"


async def test_the_move_to_running_is_committed_with_synchronous_full(h: Harness) -> None:
    statements: list[str] = []
    await h.bot.core.database.conn.set_trace_callback(statements.append)
    try:
        assert (await h.answer(await h.edit("make it night")))["attachments"]
    finally:
        await h.bot.core.database.conn.set_trace_callback(None)  # type: ignore[arg-type]

    [running] = [i for i, sql in enumerate(statements) if sql.startswith(RUNNING)]
    pragmas = [
        (i, sql.split("=")[1].strip())
        for i, sql in enumerate(statements)
        if sql.startswith("PRAGMA synchronous =")
    ]
    before = [mode for i, mode in pragmas if i < running]
    after = [(i, mode) for i, mode in pragmas if i > running]
    assert before and before[-1] == "FULL"  # in effect for that commit
    # ...and only for it: back to NORMAL before anything else is written.
    assert after and after[0][1] == "NORMAL"
    between = statements[running + 1 : after[0][0]]
    assert not [sql for sql in between if not sql.startswith("SELECT")]  # reads only
    [(mode,)] = await h.bot.core.database.fetchall("PRAGMA synchronous")
    assert mode == 1  # NORMAL


def _strace_works() -> bool:
    if shutil.which("strace") is None:
        return False
    probe = subprocess.run(
        ["strace", "-f", "-o", "/dev/null", sys.executable, "-c", "pass"],  # noqa: S607
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


@pytest.mark.skipif(not _strace_works(), reason="needs strace (and ptrace) to watch fsyncs")
async def test_the_wal_reaches_the_disk_before_the_api_call_is_sent(
    tmp_path: Path, world: tuple
) -> None:
    """A real `python -m bot` under strace: between the edit's arrival and its API call
    going out, the database's WAL is synced to disk at least once (NORMAL never syncs it
    on commit, only at checkpoints)."""
    discord, segmind = world
    env = bot_env(tmp_path, discord, segmind)
    trace = tmp_path / "strace.txt"
    segmind.delay = 60  # the call stays in flight while the test reads the trace
    log = (tmp_path / "bot.log").open("ab")
    # Its own process group: killing strace alone would leave the bot running untraced.
    proc = await asyncio.create_subprocess_exec(
        "strace", "-f", "-ttt", "-y", "-e", "trace=fsync,fdatasync", "-o", str(trace),
        sys.executable, "-m", "bot", cwd=tmp_path, env=env, stdout=log, stderr=log,
        start_new_session=True,
    )  # fmt: skip
    try:
        await discord.wait_for(lambda: discord.requests_to("PUT", "/commands"), 30)
        await asyncio.sleep(0.5)  # start-up's own syncs (migrations, WAL mode) are over
        asked_at = time.time()
        await send_edit(discord, "durable", MEMBER_ID)
        await discord.wait_for(lambda: segmind.in_flight == 1, 20)
        sent_at = time.time()
        synced = [
            float(line.split()[1])
            for line in trace.read_text().splitlines()
            if re.search(r"f(data)?sync\(\d+<[^>]*kontext\.db-wal>\) = 0", line)
        ]
        assert any(asked_at < t < sent_at for t in synced), synced
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # strace and the bot it runs
        await proc.wait()
        log.close()
