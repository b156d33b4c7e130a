"""Telling waiting members where they stand: each job's status hook is called at most once
per interval, only when what it would show has changed, and each update on its own task
(one slow Discord edit must not hold the rest back)."""

from __future__ import annotations

import asyncio
import bisect
import itertools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.clock import Clock

if TYPE_CHECKING:
    from bot.queue import FairQueue, Job

log = logging.getLogger(__name__)

BATCH = 100  # jobs handled per turn of the event loop when there are many


@dataclass(frozen=True, slots=True)
class Progress:
    """What a waiting member is shown: where the job stands, or how long it has run."""

    job_id: int
    state: str  # 'queued' or 'running'
    ahead: int = 0
    eta_s: float = 0.0
    elapsed_s: float = 0.0


ProgressHook = Callable[[Progress], Awaitable[None]]


async def keep_posted(queue: FairQueue, clock: Clock) -> None:
    """Run for the queue's life (it cancels this task when it closes)."""
    while True:
        interval = queue.limits.status_interval_s
        await clock.sleep(min(1.0, interval))
        await _post_all(queue, clock.now(), interval)


async def _post_all(queue: FairQueue, now: float, interval: float) -> None:
    """One look at every job: each whose display changed hears of it. What this builds
    (every waiting job's position) is let go when it returns, not kept until the next."""
    positions = queue.positions()
    for count, job in enumerate(queue.jobs(), 1):
        if count % BATCH == 0:
            await asyncio.sleep(0)  # 2,000 waiting jobs: the loop breathes between
        if job.on_progress is None or now - job.shown_at < interval:
            continue
        if job.updating is not None and not job.updating.done():
            continue  # the last update is still on its way to Discord
        progress = queue.progress(job, positions)
        if job.shown is None and progress.state == "running" and progress.elapsed_s < interval:
            continue  # a quick edit needs no status message at all
        shown = display(progress, interval)
        if shown == job.shown:
            continue
        job.shown, job.shown_at = shown, now
        job.updating = asyncio.create_task(_show(job.on_progress, progress))
        job.updating.add_done_callback(job.updated)


async def _show(hook: ProgressHook, progress: Progress) -> None:
    try:
        await hook(progress)
    except Exception:  # a failed status edit must not stop the queue
        log.warning("Status update for job %s failed", progress.job_id, exc_info=True)


def display(progress: Progress, interval: float) -> int:
    """What a member would see of `progress`, as one number (a job keeps the last one
    shown, not the Progress: 2,000 waiting jobs each keep it): a place in the queue and
    its wait to 5 s, or a count of status intervals spent editing."""
    if progress.state == "queued":
        return (progress.ahead << 32) | round(progress.eta_s / 5)
    return -1 - int(progress.elapsed_s // interval)


def turn_positions(queues: Sequence[Sequence[Job]]) -> dict[int, int]:
    """For every waiting job, how many start before it when members take turns (`queues`:
    each member's waiting jobs, in turn order). The k-th job (from 0) of a member has
    ahead of it min(L, k) jobs of every member (L = that member's waiting jobs), plus one
    more of each member earlier in the turn order that has more than k: S(k) + C_before(k).
    O(members x longest)."""
    lengths = [len(q) for q in queues]
    ranked = sorted(lengths)
    prefix = [0, *itertools.accumulate(ranked)]
    ahead: dict[int, int] = {}
    for k in range(max(lengths, default=0)):
        shorter = bisect.bisect_right(ranked, k)  # members with at most k waiting
        s_k = prefix[shorter] + k * (len(ranked) - shorter)
        before = 0
        for queue, length in zip(queues, lengths, strict=True):
            if length > k:
                ahead[queue[k].id] = s_k + before
                before += 1
    return ahead
