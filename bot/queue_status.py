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
        now = clock.now()
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
            if _same_display(job.shown, progress, interval):
                continue
            job.shown, job.shown_at = progress, now
            job.updating = asyncio.create_task(_show(job.on_progress, progress))
            job.updating.add_done_callback(job.updated)


async def _show(hook: ProgressHook, progress: Progress) -> None:
    try:
        await hook(progress)
    except Exception:  # a failed status edit must not stop the queue
        log.warning("Status update for job %s failed", progress.job_id, exc_info=True)


def _same_display(old: Progress | None, new: Progress, interval: float) -> bool:
    if old is None or old.state != new.state:
        return False
    if new.state == "queued":
        return old.ahead == new.ahead and round(old.eta_s / 5) == round(new.eta_s / 5)
    return int(old.elapsed_s // interval) == int(new.elapsed_s // interval)


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
