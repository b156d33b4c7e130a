"""One measurement per process (`python -m bench.worker PART CONFIG_JSON`), so each part's
peak RSS (ru_maxrss) is its own. Prints the result as one JSON line on stdout."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import math
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import standins
from bench.endtoend import end_to_end
from bench.wiring import (
    GUILD_ID,
    BenchPoster,
    LoopLag,
    StatusCounter,
    bench_settings,
    core,
    edit_request,
    log_to_file,
)
from bench.worstcase import worst_case
from bot import db
from bot.administration import ServerAdmin
from bot.client import extension_names
from bot.ledger import Ledger, QuotaExceeded
from bot.queue import JobCancelled, JobEnd
from bot.service import Destination

Result = dict[str, Any]
# Only the concurrency limit should shape the queue run: the rate limit is lifted to its max.
RPM_LIFTED = 10_000
# JPEG results keep the stand-in's re-encoding (its CPU, on this 2-core box) off the
# critical path of the queue runs; the overhead part uses the bot's default (PNG).
QUEUE_OUTPUT_FORMAT = "jpg"
FIRST_MEMBER_ID = 100_000
SAMPLE_INTERVAL_S = 0.05
LEDGER_ACTOR_ID = 1
LEDGER_EPSILON = 1e-9


@dataclass
class Tally:
    """How the queued edits ended, counted as their members would hear of it."""

    poster: BenchPoster
    total: int
    stop_after: int | None
    succeeded: int = 0
    cancelled: int = 0
    ended: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    enough: asyncio.Event = field(default_factory=asyncio.Event)  # stop_after succeeded
    all_ended: asyncio.Event = field(default_factory=asyncio.Event)

    def count(self, error: BaseException | None) -> None:
        self.ended += 1
        if error is None:
            self.succeeded += 1
            if self.stop_after is not None and self.succeeded >= self.stop_after:
                self.enough.set()
        elif isinstance(error, JobCancelled):
            self.cancelled += 1
        else:
            self.errors[type(error).__name__] = self.errors.get(type(error).__name__, 0) + 1
        if self.ended == self.total:
            self.all_ended.set()


@dataclass(slots=True)
class Placed:
    """One queued edit, as numbers only, and its end hook (the cog's is a closure). The
    benchmark's own record, kept small: it is not the bot's memory."""

    number: int  # 1 for the member's first job, 2 for the second...
    tally: Tally
    waited_s: float | None = None  # enqueue -> start, set when it started
    api_s: float | None = None  # set when it succeeded
    handed_at: float = 0.0  # the handler handed it over; then the acknowledgement's wait
    ack_s: float | None = None

    async def acknowledged(self) -> None:
        """The cog's acknowledgement (a defer, a reaction): the bot's part of Discord's 3 s."""
        self.ack_s = time.perf_counter() - self.handed_at

    async def ended(self, end: JobEnd) -> None:
        self.waited_s = end.waited_s
        if end.error is None:
            # Keep only numbers: holding results would charge the bot for memory the cog
            # lets go of once it has posted.
            self.api_s = self.tally.poster.api_time(end.result)  # type: ignore[arg-type]
        self.tally.count(end.error)


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..1) of a non-empty list."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


# -- part 1: the bot's own time per edit --------------------------------------------------


async def overhead(cfg: Result) -> Result:
    """Sequential edits at zero API latency: wall time through EditService.run (delivery's
    bookkeeping included) minus the API call time the client measured (elapsed_s)."""
    data_dir = Path(cfg["data_dir"])
    images = {name: Path(path) for name, path in cfg["images"].items()}
    warmup, count = cfg["warmup"], cfg["edits"]
    cases: Result = {}
    log_to_file(data_dir / "bot.log")
    async with standins.running(0.0, images) as stand:
        for mode in ("url", "base64"):
            for name in images:
                settings = bench_settings(
                    data_dir / f"{name}-{mode}", stand, segmind_input_mode=mode
                )
                status = StatusCounter()
                bot_ms: list[float] = []
                api_ms: list[float] = []
                poster = BenchPoster()
                async with core(settings) as c:
                    for i in range(warmup + count):
                        request = edit_request(stand.attachments[name], FIRST_MEMBER_ID, None)
                        started = time.perf_counter()
                        posted = await c.edits.run(
                            request, to=Destination(poster), on_progress=status.show
                        )
                        api_s = poster.api_time(posted)
                        total = time.perf_counter() - started
                        if i >= warmup:  # the first edits open connections and warm caches
                            bot_ms.append((total - api_s) * 1000)
                            api_ms.append(api_s * 1000)
                cases[f"{name}/{mode}"] = {
                    "p50_ms": percentile(bot_ms, 0.5),
                    "p95_ms": percentile(bot_ms, 0.95),
                    "api_p50_ms": percentile(api_ms, 0.5),
                    "edits": len(bot_ms),
                }
    return {"cases": cases}


# -- parts 2 and 3: many members through the fair queue -----------------------------------


async def queue_run(cfg: Result) -> Result:
    """`members` x `per_member` edits submitted at once (each member's in a row, the order
    that is hardest on fairness), at `latency` s per API call.

    With `stop_after` set, the run stops once that many edits succeeded: the rest are
    drained as at shutdown (the memory run with a long queue).
    """
    # The running bot has discord.py and every cog imported: count their memory too.
    for name in extension_names():
        importlib.import_module(name)
    members, per_member = cfg["members"], cfg["per_member"]
    latency, concurrency = cfg["latency"], cfg["concurrency"]
    stop_after: int | None = cfg.get("stop_after")
    data_dir = Path(cfg["data_dir"])
    async with standins.running(latency, {"photo": Path(cfg["image"])}) as stand:
        settings = bench_settings(
            data_dir,
            stand,
            segmind_max_concurrency=concurrency,
            segmind_rpm=RPM_LIFTED,
            max_inflight_per_user=1,
            max_queued_per_user=per_member,
            max_queued_total=members * per_member,  # the long-queue run queues them all
        )
        log_to_file(data_dir / "bot.log")
        attachment = stand.attachments["photo"]
        status = StatusCounter()
        placed: list[Placed] = []
        poster = BenchPoster()
        tally = Tally(poster, members * per_member, stop_after)
        peak_running = 0

        async with core(settings) as c, LoopLag() as lag:

            async def member_edit(user_id: int, number: int) -> None:
                # As the cog does: hand the edit over with a status hook and an end hook
                # (a refusal is told there too), then return.
                record = Placed(number, tally, handed_at=time.perf_counter())
                request = edit_request(attachment, user_id, QUEUE_OUTPUT_FORMAT)
                c.edits.submit(
                    request,
                    to=Destination(poster),
                    on_end=record.ended,
                    on_progress=status.show,
                    acknowledge=record.acknowledged,
                )
                placed.append(record)

            async def sample() -> None:
                nonlocal peak_running
                while True:
                    peak_running = max(peak_running, c.edits.queue.running_count)
                    await asyncio.sleep(SAMPLE_INTERVAL_S)

            sampler = asyncio.create_task(sample())
            started = time.perf_counter()
            # The handlers of the members' interactions; each ends once its edit is handed over.
            handlers: set[asyncio.Task[None]] = set()
            for m in range(members):
                for k in range(1, per_member + 1):
                    task = asyncio.create_task(member_edit(FIRST_MEMBER_ID + m, k))
                    handlers.add(task)
                    task.add_done_callback(handlers.discard)
                    # Interactions arrive one gateway event per loop turn, not all in one.
                    await asyncio.sleep(0)
            if stop_after is None:
                await tally.all_ended.wait()
            else:
                with contextlib.suppress(TimeoutError):  # then report how far it got
                    await asyncio.wait_for(tally.enough.wait(), cfg["time_limit_s"])
                # Shutdown as on SIGTERM: waiting jobs are cancelled and marked in the database.
                await c.edits.shutdown(grace_s=latency * 4 + 1)
            if handlers:
                await asyncio.wait(handlers)
            wall_s = time.perf_counter() - started
            sampler.cancel()

    api_times = [p.api_s for p in placed if p.api_s is not None]
    api_mean_s = sum(api_times) / max(1, len(api_times))
    result: Result = {
        "jobs": tally.total,
        "succeeded": len(api_times),
        "cancelled": tally.cancelled,
        "errors": tally.errors,
        "wall_s": wall_s,
        "api_mean_s": api_mean_s,
        "loop_lag_ms": lag.worst_s * 1000,
        "peak_running": peak_running,
        "status_calls": status.calls,
    }
    acks = [p.ack_s * 1000 for p in placed if p.ack_s is not None]
    if acks:
        result.update(
            acknowledged=len(acks),
            ack_p50_ms=percentile(acks, 0.5),
            ack_p95_ms=percentile(acks, 0.95),
            ack_max_ms=max(acks),
        )
    result.update(_fairness(placed, members, concurrency, latency))
    result.update(_fairness(placed, members, concurrency, api_mean_s, prefix="measured_"))
    return result


def _fairness(
    placed: list[Placed], members: int, concurrency: int, latency: float, prefix: str = ""
) -> Result:
    """Each wait (enqueue -> start) against the fair share: taking turns, a member's k-th
    job is among the first k*members to start, so it starts by ceil(k*members/C) x latency."""
    worst = {"max_wait_s": 0.0, "max_wait_job": 0, "max_wait_fair_s": 0.0}
    late = started = 0
    worst_ratio = 0.0
    for p in placed:
        if p.waited_s is None:
            continue
        started += 1
        wait = p.waited_s
        fair = math.ceil(p.number * members / concurrency) * latency
        late += wait > fair
        worst_ratio = max(worst_ratio, wait / fair)
        if wait > worst["max_wait_s"]:
            worst = {"max_wait_s": wait, "max_wait_job": p.number, "max_wait_fair_s": fair}
    found = {**worst, "late_jobs": late, "started_jobs": started, "worst_wait_ratio": worst_ratio}
    return {prefix + key: value for key, value in found.items()}


# -- part 4: the ledger under concurrent load ---------------------------------------------


async def ledger_run(cfg: Result) -> Result:
    """`pairs` concurrent reserve -> commit attempts over `members` members whose allowances
    cover 60-100 % of their attempts; then no member may have been charged past it."""
    members, pairs, cost = cfg["members"], cfg["pairs"], cfg["cost"]
    per_member = pairs // members
    fewest = int(per_member * 0.6)
    allowed = {FIRST_MEMBER_ID + m: fewest + m % (per_member - fewest + 1) for m in range(members)}
    database = await db.connect(Path(cfg["data_dir"]) / "ledger.db")
    try:
        ledger = Ledger(database, default_credits=0.0, default_period="day")
        admin = ServerAdmin(database, ledger, iterate_author_only_default=False)
        for user_id, edits in allowed.items():
            await admin.set_member_quota(GUILD_ID, LEDGER_ACTOR_ID, user_id, edits * cost)
        refused = 0
        committed = 0

        async def pair(user_id: int) -> None:
            nonlocal refused
            try:
                reservation = await ledger.reserve(GUILD_ID, user_id, (), cost)
            except QuotaExceeded:
                refused += 1
                return
            await ledger.commit(reservation, cost, "estimate")
            nonlocal committed
            committed += 1

        started = time.perf_counter()
        # Interleaved across members, all in flight at once, as a busy server would be.
        await asyncio.gather(*(pair(u) for _ in range(per_member) for u in allowed))
        elapsed = time.perf_counter() - started
        status = {u: await ledger.status(GUILD_ID, u, ()) for u in allowed}
    finally:
        await database.close()
    overspent = sum(s.used > allowed[u] * cost + LEDGER_EPSILON for u, s in status.items())
    # Refused although money was left:
    short = sum(round(s.used / cost) != allowed[u] for u, s in status.items())
    return {
        "members": members,
        "attempts": per_member * members,
        "committed": committed,
        "refused": refused,
        "elapsed_s": elapsed,
        "pairs_per_s": committed / elapsed,
        "attempts_per_s": per_member * members / elapsed,
        "overspent_members": overspent,
        "short_members": short,
        "left_reserved": sum(round(s.held / cost) for s in status.values()),
    }


PARTS: dict[str, Callable[[Result], Awaitable[Result]]] = {
    "endtoend": end_to_end,
    "overhead": overhead,
    "queue": queue_run,
    "ledger": ledger_run,
    "worstcase": worst_case,
}


def _vm_hwm_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    part, config = sys.argv[1], json.loads(sys.argv[2])
    result = asyncio.run(PARTS[part](config))
    # Linux reports ru_maxrss in KiB. VmHWM (this image's own high-water mark) is a check:
    # ru_maxrss also keeps the parent's RSS at fork time across exec.
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["vmhwm_mb"] = _vm_hwm_kb() / 1024
    print(json.dumps(result))


if __name__ == "__main__":
    main()
