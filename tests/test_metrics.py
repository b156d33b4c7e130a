"""`GET /metrics`: Prometheus text that moves by exactly what happened, per edit."""

from __future__ import annotations

import math
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot import core as core_module
from bot.db import generations
from bot.metrics import OTHER, SPEND_TOP, Metrics
from tests.harness import Harness
from tests.helpers import make_new_generation
from tests.test_queue_flow import hold_the_slot, wait_jobs
from tests.world import ADMIN_ID, GUILD_ID, OTHER_MEMBER_ID, make_settings

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample by (name, labels); parsing fails on anything that is not Prometheus text."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def scrape(h: Harness) -> Samples:
    assert h.bot.ops_http is not None
    async with httpx.AsyncClient(timeout=5.0, trust_env=False) as client:
        answer = await client.get(f"http://127.0.0.1:{h.bot.ops_http.port}/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    return parse(answer.text)


def moved(before: Samples, after: Samples) -> dict[tuple[str, frozenset], float]:
    """What changed between two scrapes, leaving out gauges read live and timestamps."""
    live = {
        "kontext_queue_waiting",
        "kontext_queue_running",
        "kontext_gateway_connected",
        "kontext_gateway_latency_seconds",
        "kontext_credits_balance",
        "kontext_halted",
    }
    changes = {}
    for key in before.keys() | after.keys():
        name = key[0]
        if name.endswith(("_created", "_sum")) or name in live:
            continue
        delta = after.get(key, 0.0) - before.get(key, 0.0)
        if delta:
            changes[key] = delta
    return changes


def bucket_counts(samples: Samples, name: str) -> dict[tuple, float]:
    return {k: v for k, v in samples.items() if k[0] == f"{name}_bucket"}


@pytest.mark.settings(http_port=0)
async def test_metrics_parse_and_counters_move_by_exactly_one_per_edit(harness: Harness) -> None:
    h = harness
    for round_ in range(3):
        before = await scrape(h)
        interaction = await h.edit(f"make it night {round_}")
        await h.answer(interaction)
        # The job leaves the queue just after its result is posted.
        await h.discord.wait_for(lambda: h.bot.core.edits.queue.running_count == 0)
        after = await scrape(h)
        changes = moved(before, after)
        ones = {
            k: v
            for k, v in changes.items()
            if not k[0].endswith("_bucket") and k[0] != "kontext_spend_credits_total"
        }
        assert ones == {
            ("kontext_edits_total", frozenset({("outcome", "succeeded"), ("source", "slash")})): 1,
            ("kontext_api_latency_seconds_count", frozenset()): 1,
            ("kontext_queue_wait_seconds_count", frozenset()): 1,
        }
        # One observation each: the +Inf bucket moves by one, no bucket by more.
        for name in ("kontext_api_latency_seconds", "kontext_queue_wait_seconds"):
            buckets = {k: v for k, v in changes.items() if k[0] == f"{name}_bucket" and v}
            assert set(buckets.values()) == {1}
            assert (f"{name}_bucket", frozenset({("le", "+Inf")})) in buckets
        spend = ("kontext_spend_credits_total", frozenset({("guild_id", str(GUILD_ID))}))
        assert changes[spend] == pytest.approx(h.segmind.cost)
    assert value(after, "kontext_credits_balance") == pytest.approx(h.segmind.credits)
    assert value(after, "kontext_queue_waiting") == 0
    assert value(after, "kontext_queue_running") == 0
    assert value(after, "kontext_gateway_connected") == 1
    assert value(after, "kontext_halted") == 0


@pytest.mark.settings(http_port=0)
async def test_a_failed_edit_counts_once_and_each_5xx_or_429_attempt_is_counted(
    harness: Harness,
) -> None:
    h = harness  # one retry after a 503 "come back later" or a 429 (segmind_max_retries=1)
    before = await scrape(h)
    h.segmind.fail_next(503, times=2, headers={"Retry-After": "0"})
    await h.answer(await h.edit("fails twice"))
    h.segmind.fail_next(429, headers={"Retry-After": "0"})
    await h.answer(await h.edit("rate limited once, then fine"))
    after = await scrape(h)
    changes = moved(before, after)
    assert value(changes, "kontext_edits_total", outcome="failed", source="slash") == 1
    assert value(changes, "kontext_edits_total", outcome="succeeded", source="slash") == 1
    assert value(changes, "kontext_api_errors_total", kind="5xx") == 2
    assert value(changes, "kontext_api_errors_total", kind="429") == 1
    assert value(changes, "kontext_api_latency_seconds_count") == 4  # every answer is timed
    spend = value(changes, "kontext_spend_credits_total", guild_id=str(GUILD_ID))
    assert spend == pytest.approx(h.segmind.cost)  # only the edit that worked was charged


@pytest.mark.settings(http_port=0, quota_default_credits=0)
async def test_an_edit_refused_before_the_queue_counts_once_as_refused(harness: Harness) -> None:
    h = harness
    before = await scrape(h)
    answer = await h.answer(await h.edit("no allowance for this"))
    assert "out of edits" in answer["content"]
    changes = moved(before, await scrape(h))
    assert changes == {
        ("kontext_edits_total", frozenset({("outcome", "refused"), ("source", "slash")})): 1
    }
    assert h.segmind.requests == []


@pytest.mark.settings(http_port=0, max_queued_total=1, segmind_max_concurrency=1)
async def test_an_edit_refused_for_a_full_queue_counts_as_refused(harness: Harness) -> None:
    h = harness
    await hold_the_slot(h, "running")
    await h.edit("waiting", user_id=OTHER_MEMBER_ID)
    await wait_jobs(h, 2)
    before = await scrape(h)

    answer = await h.answer(await h.edit("one too many", user_id=ADMIN_ID))

    assert "1 edit waiting" in answer["content"]
    changes = moved(before, await scrape(h))
    assert value(changes, "kontext_edits_total", outcome="refused", source="slash") == 1


def test_spend_shows_the_top_20_servers_and_adds_up_the_rest_as_other() -> None:
    metrics = Metrics()
    for guild_id in range(1, SPEND_TOP + 6):
        metrics.charged(guild_id, float(guild_id))
    samples = parse(metrics.exposition()[0].decode())
    spend = {
        dict(labels)["guild_id"]: v
        for (name, labels), v in samples.items()
        if name == "kontext_spend_credits_total"
    }
    assert len(spend) == SPEND_TOP + 1
    assert spend[OTHER] == sum(range(1, 6))  # the five smallest spenders
    assert spend[str(SPEND_TOP + 5)] == SPEND_TOP + 5
    assert sum(spend.values()) == sum(range(1, SPEND_TOP + 6))


def test_two_bots_in_one_process_keep_their_own_counts() -> None:
    first, second = Metrics(), Metrics()  # the default registry would refuse the second
    first.edit_finished("succeeded", "slash")
    one = parse(first.exposition()[0].decode())
    other = parse(second.exposition()[0].decode())
    assert value(one, "kontext_edits_total", outcome="succeeded", source="slash") == 1
    assert value(other, "kontext_edits_total", outcome="succeeded", source="slash") == 0
    assert math.isnan(value(other, "kontext_credits_balance"))  # unknown, not zero


async def test_the_ledger_reports_charges_and_refunds(tmp_path: Path) -> None:
    core = await core_module.build(make_settings(tmp_path))
    try:
        reservation = await core.ledger.reserve(GUILD_ID, 1, (), 0.04)
        generation_id = await generations.insert(core.database, make_new_generation())
        await core.ledger.attach(reservation, generation_id)
        assert await core.ledger.hold(reservation, 0.05, "header")  # the API answered
        assert not await core.ledger.hold(reservation, 0.05, "header")  # once only
        assert await core.ledger.refund_generation(generation_id)  # never delivered
        samples = parse(core.metrics.exposition()[0].decode())
        assert value(samples, "kontext_spend_credits_total", guild_id=str(GUILD_ID)) == 0.05
        assert value(samples, "kontext_refunds_total") == 1
    finally:
        await core.aclose()
