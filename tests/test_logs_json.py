"""LOG_FORMAT=json: one JSON object per line, with the edit's context, secrets masked."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.logs import MASK, bind, setup_logging
from tests.harness import Harness
from tests.test_config_cli import assert_one_line_config_error, run_bot
from tests.world import API_KEY, BOT_TOKEN, GUILD_ID


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """The root logger as `LOG_FORMAT=json` sets it up, writing to a buffer."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = io.StringIO()
    setup_logging("INFO", [API_KEY, BOT_TOKEN], fmt="json", stream=stream)
    try:
        yield stream
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        logging.captureWarnings(False)


def lines(stream: io.StringIO) -> list[dict]:
    """Every line parsed on its own: one that is not a JSON object fails the test."""
    parsed = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert all(isinstance(p, dict) for p in parsed)
    return parsed


async def test_json_logs_parse_line_by_line_and_carry_the_edits_context(
    harness: Harness, json_log: io.StringIO
) -> None:
    h = harness
    await h.answer(await h.edit("make it night"))
    # The job's own end line is written just after the result is posted.
    await h.discord.wait_for(
        lambda: any(r.get("status") == "done" for r in lines(json_log)),
        message="the job's end line",
    )
    logging.getLogger("bot").info("outside any edit")
    records = lines(json_log)
    assert records, "the edit logged nothing"
    [done] = [r for r in records if r.get("status") == "succeeded"]
    assert done["generation_id"] == 1
    assert done["job_id"] == 1
    assert done["guild_id"] == GUILD_ID
    assert done["source"] == "slash"
    assert done["cost"] == pytest.approx(h.segmind.cost)
    assert done["duration_s"] >= 0
    assert done["logger"] == "bot.pipeline"
    assert done["level"] == "INFO"
    [job_end] = [r for r in records if r.get("status") == "done"]
    assert job_end["job_id"] == 1 and job_end["generation_id"] == 1
    # The edit's fields stayed in its own task.
    assert records[-1]["message"] == "outside any edit"
    assert "job_id" not in records[-1] and "generation_id" not in records[-1]
    text = json_log.getvalue()
    assert API_KEY not in text and BOT_TOKEN not in text


def test_json_lines_mask_secrets_in_messages_fields_and_tracebacks(
    json_log: io.StringIO,
) -> None:
    log = logging.getLogger("bot.anything")
    log.warning("key %s token %s", API_KEY, BOT_TOKEN)
    log.info("inline " + API_KEY, extra={"source": f"from {BOT_TOKEN}"})
    try:
        raise RuntimeError(f"request with x-api-key {API_KEY} failed\nsecond line")
    except RuntimeError:
        log.exception("edit failed")
    text = json_log.getvalue()
    assert API_KEY not in text and BOT_TOKEN not in text
    first, second, third = lines(json_log)
    assert first["message"] == f"key {MASK} token {MASK}"
    assert second["message"] == f"inline {MASK}"
    assert second["source"] == f"from {MASK}"
    assert third["message"] == "edit failed"
    assert f"RuntimeError: request with x-api-key {MASK} failed" in third["exc"]
    assert "Traceback" in third["exc"]


async def test_bound_fields_stay_with_their_own_task(json_log: io.StringIO) -> None:
    import asyncio

    async def job(job_id: int) -> None:
        bind(job_id=job_id)
        await asyncio.sleep(0)
        logging.getLogger("bot.service").info("working on %d", job_id)

    await asyncio.gather(asyncio.create_task(job(1)), asyncio.create_task(job(2)))
    logging.getLogger("bot").info("outside")
    by_message = {r["message"]: r.get("job_id") for r in lines(json_log)}
    assert by_message == {"working on 1": 1, "working on 2": 2, "outside": None}


def test_an_unknown_log_format_stops_start_up_naming_it(tmp_path: Path) -> None:
    result = run_bot(tmp_path, DISCORD_TOKEN="t", SEGMIND_API_KEY="k", LOG_FORMAT="xml")
    line = assert_one_line_config_error(result)
    assert "LOG_FORMAT" in line and "text or json" in line
