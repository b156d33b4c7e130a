"""Exact money under faults: `python -m bench.money [--edits 1000] [--concurrency 8]`.

The bot's own core runs in a child process against a Segmind stand-in (in this process)
that injects faults: timeouts (billed), 5xx after the model ran (billed), 503 "come back
later", 429, and 406 refusals; its cost (0.055) is far from SEGMIND_COST_ESTIMATE (0.04),
so it must be learned. Discord is a poster that refuses 3 % of uploads (a 403: the result
is held, never charged, refunded when it expires) and fails 5 % once (retried). The child
is killed with SIGKILL twice (after a third and two thirds of the results); the next one
recovers what it left. Then:

- charged to members vs what the stand-in billed for their delivered results (within 1 %);
- what nobody was charged for, as /admin credits reports it, vs the stand-in's own total
  minus what members were charged (within 1 % of the total spend).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import io
import itertools
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from PIL import Image

from bench.standins import API_KEY, CHANNEL_ID, Standins
from bench.wiring import GUILD_ID, bench_settings, edit_request, log_to_file
from bot.cards import ResultCard
from bot.config import Settings
from bot.core import build
from bot.errors import UserError
from bot.ports import Posted, PostFailed
from bot.queue import JobCancelled
from bot.service import Destination

COST, ESTIMATE = 0.055, 0.04
TARGET = 0.01
API_FAULTS = {  # per request
    "timeout (billed)": 0.03,
    "500 after the model ran (billed)": 0.03,
    "503 + Retry-After": 0.02,
    "429": 0.02,
    "406 refusal": 0.02,
}
REFUSED_UPLOADS, FLAKY_UPLOADS = 0.03, 0.05
TIMEOUT_S, SLOW_S, LATENCY_S = 0.6, 0.9, 0.05  # a timeout is 12 calls long, as 120 s to 10 s
FIRST_MEMBER_ID = 300_000
ADMIN_ID = 1


def settings_for(cfg: dict[str, Any]) -> Settings:
    standins = Standins(cfg["segmind_url"], cfg["cdn_host"], {})
    return bench_settings(
        Path(cfg["data_dir"]),
        standins,
        segmind_cost_estimate=ESTIMATE,
        segmind_timeout_s=TIMEOUT_S,
        segmind_max_concurrency=cfg["concurrency"],
        segmind_rpm=10_000,
    )


# -- the child: one life of the bot --------------------------------------------------------


class FaultyDiscord:
    """Channels and poster standing in for Discord: takes most uploads, refuses some."""

    def __init__(self, life: int, seed: int) -> None:
        self._rng = random.Random(seed * 10 + life)
        self._ids = itertools.count(life * 10_000_000 + 1)
        self.delivered = 0  # results in the database, counted on from there

    def poster(self, channel_id: int, guild_id: int | None, **_: object) -> FaultyDiscord:
        return self

    async def post(self, card: ResultCard, image: bytes) -> Posted:
        roll = self._rng.random()
        if roll < REFUSED_UPLOADS:
            raise PostFailed("HTTP 403", retryable=False)
        if roll < REFUSED_UPLOADS + FLAKY_UPLOADS:
            raise PostFailed("HTTP 503", retryable=True)
        message_id = next(self._ids)
        self.delivered += 1
        print(f"delivered {self.delivered}", flush=True)
        return Posted(CHANNEL_ID, message_id, message_id, None, "")

    async def tell(self, channel_id: int, guild_id: int | None, user_id: int, text: str) -> None:
        del channel_id, guild_id, user_id, text

    async def dm(self, user_id: int, text: str) -> bool:
        del user_id, text
        return True


async def life(cfg: dict[str, Any]) -> None:
    settings = settings_for(cfg)
    log_to_file(Path(cfg["data_dir"]) / "bot.log")
    discord = FaultyDiscord(cfg["life"], cfg["seed"])
    core = await build(settings, channels=discord)  # settles what the last life left
    db = core.database
    discord.delivered = (await db.fetchone(_DELIVERED))[0]  # type: ignore[index]
    core.delivery.backoff_s = 0.01
    core.start()
    try:
        submitted = (await db.fetchone("SELECT COUNT(*) FROM jobs"))[0]  # type: ignore[index]
        await core.recovery.finish(discord)  # delivers or refunds, and queues again
        todo = itertools.count(submitted)

        async def member(user_id: int) -> None:
            request = edit_request(cfg["attachment"], user_id, "jpg")
            while next(todo) < cfg["edits"]:
                with contextlib.suppress(UserError, JobCancelled):
                    await core.edits.run(request, to=Destination(discord))

        await asyncio.gather(*(member(FIRST_MEMBER_ID + m) for m in range(cfg["concurrency"])))
        # Edits recovery queued again run on their own: their rows say when they are done.
        while (await db.fetchone(_UNFINISHED))[0]:  # type: ignore[index]  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    finally:
        await core.aclose()


_DELIVERED = "SELECT COUNT(*) FROM generations WHERE result_message_id IS NOT NULL"
_UNFINISHED = "SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'running')"


# -- the parent: stand-ins, lives, figures -------------------------------------------------


def _faulty_segmind(seed: int) -> Any:
    from tests.fake_segmind import FakeSegmind  # the bot's processes never load the fakes

    class FaultySegmind(FakeSegmind):
        def __init__(self) -> None:
            super().__init__(api_key=API_KEY, credits=1e6, cost=COST, delay=LATENCY_S)
            self._rng = random.Random(seed)
            self.injected: collections.Counter[str] = collections.Counter()

        async def _handle_model(self, request: Any) -> Any:
            if request.method == "POST":
                self._inject()
            return await super()._handle_model(request)

        def _inject(self) -> None:
            roll, edge = self._rng.random(), 0.0
            for kind, rate in API_FAULTS.items():
                edge += rate
                if roll < edge:
                    self.injected[kind] += 1
                    if kind.startswith("timeout"):
                        self.delay_next(SLOW_S)
                    elif kind.startswith("500"):
                        self.fail_next(500, billed=True)
                    elif kind.startswith("503"):
                        self.fail_next(503, headers={"Retry-After": "0"})
                    elif kind == "429":
                        self.fail_next(429, headers={"Retry-After": "0"})
                    else:
                        self.fail_next(406, body={"error": "Not Acceptable"})
                    return

    return FaultySegmind()


def _photo() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (256, 192), (90, 120, 200)).save(out, "PNG")
    return out.getvalue()


async def _run_life(cfg: dict[str, Any], kill_at: int | None) -> bool:
    """One child; SIGKILL once `kill_at` results are delivered. True when it was killed."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.money", "--life", json.dumps(cfg),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    killed = False
    while line := await proc.stdout.readline():
        if kill_at is not None and int(line.split()[1]) >= kill_at:
            proc.kill()
            killed = True
            break
    await proc.wait()
    return killed


async def measure(edits: int, concurrency: int, seed: int, data_dir: Path) -> dict[str, Any]:
    from tests.fake_discord import FakeDiscord

    api = _faulty_segmind(seed)
    async with api, FakeDiscord() as cdn:
        attachment = cdn.add_attachment(_photo(), "photo.png", "image/png", channel_id=CHANNEL_ID)
        cfg = {
            "segmind_url": api.base_url, "cdn_host": cdn.cdn_host, "attachment": attachment,
            "data_dir": str(data_dir), "edits": edits, "concurrency": concurrency, "seed": seed,
        }  # fmt: skip
        started, credits_before = time.perf_counter(), api.credits
        kills = 0
        for number, kill_at in enumerate((edits // 3, 2 * edits // 3, None)):
            kills += await _run_life(cfg | {"life": number}, kill_at)
        # The operator's key check: a last reading, after every billed call.
        core = await build(settings_for(cfg))
        try:
            await core.operator.check_key(ADMIN_ID)
            held = await core.reports.spend(GUILD_ID)
            core.upkeep.clock = lambda: time.time() + core.results.retention_s + 1
            refunded = len(await core.upkeep.expire())
            report = await core.reports.spend(GUILD_ID)
            db = core.database
            delivered = (await db.fetchone(_DELIVERED))[0]  # type: ignore[index]
            row = await db.fetchone(
                """SELECT COALESCE(SUM(c.amount), 0), COUNT(*),
                          SUM(g.result_message_id IS NULL)
                   FROM charges c JOIN generations g ON g.id = c.generation_id
                   WHERE c.state = 'committed'"""
            )
            jobs = dict(await db.fetchall("SELECT state, COUNT(*) FROM jobs GROUP BY state"))
        finally:
            await core.aclose()
        spent = round(credits_before - api.credits, 6)
    charged = float(row[0])  # type: ignore[index]
    return {
        "edits": edits, "concurrency": concurrency, "kills": kills, "jobs": jobs,
        "delivered": delivered, "charged_results": row[1], "charged_undelivered": row[2],  # type: ignore[index]
        "held_before_expiry": held.held_month, "refunded_at_expiry": refunded,
        "api_calls": len(api.requests), "billed_calls": api.calls_billed,
        "faults": dict(api.injected), "charged": charged, "spent_delivered": delivered * COST,
        "spent": spent, "reported_month": report.month,
        "reported_uncharged": report.unattributed_month, "actual_uncharged": spent - charged,
        "wall_s": time.perf_counter() - started,
    }  # fmt: skip


def render(r: dict[str, Any]) -> str:
    charge_error = abs(r["charged"] - r["spent_delivered"]) / r["spent_delivered"]
    report_error = abs(r["reported_uncharged"] - r["actual_uncharged"]) / r["spent"]
    verdict = {True: "PASS", False: "FAIL"}
    faults = ", ".join(f"{k} {v}" for k, v in r["faults"].items())
    return "\n".join(
        [
            f"{r['edits']} edits at concurrency {r['concurrency']}, {r['kills']} x kill -9, "
            f"{r['wall_s']:.0f} s; jobs {r['jobs']}",
            f"API: {r['api_calls']} requests, {r['billed_calls']} billed; faults: {faults}",
            f"results delivered {r['delivered']} (charged {r['charged_results']}, charged "
            f"but undelivered {r['charged_undelivered']}); held for undelivered "
            f"{r['held_before_expiry']:.3f}, {r['refunded_at_expiry']} refunded at expiry",
            f"charged to members {r['charged']:.3f} vs billed for their delivered results "
            f"{r['spent_delivered']:.3f}: {charge_error:.2%} (target < {TARGET:.0%}) "
            f"{verdict[charge_error < TARGET]}",
            f"not charged to anyone: reported {r['reported_uncharged']:.3f} vs actual "
            f"{r['actual_uncharged']:.3f} (total spent {r['spent']:.3f}, reported "
            f"{r['reported_month']:.3f}): {report_error:.2%} of spend (target < {TARGET:.0%}) "
            f"{verdict[report_error < TARGET and r['charged_undelivered'] == 0]}",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--life", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.life:
        asyncio.run(life(json.loads(args.life)))
        return
    with tempfile.TemporaryDirectory(prefix="kontext-money-") as tmp:
        result = asyncio.run(measure(args.edits, args.concurrency, args.seed, Path(tmp)))
    print(render(result))


if __name__ == "__main__":
    main()
