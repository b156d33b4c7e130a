"""A fair queue in front of the API.

At most `max_concurrency` jobs run at once and at most `rpm` API calls start in any
minute (`bot.ratelimit`: a job refused before its call takes no slot); each
member has at most `per_member_running` edits running and `per_member_queued` waiting
(`QueueLimits`).
Members take turns (round-robin), so one member firing twenty edits cannot starve the
rest. Jobs hold only small records (the request describes the image, never its bytes).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from bot.clock import REAL_CLOCK, Clock, wait_at_most
from bot.errors import BadInput
from bot.queue_jobs import EndHook, Job, JobCancelled, JobEnd, Member, Place, QueueFull, QueueLimits
from bot.queue_status import Progress as Progress
from bot.queue_status import ProgressHook as ProgressHook
from bot.queue_status import keep_posted, turn_positions
from bot.ratelimit import RateLimiter
from bot.requests import EditRequest

log = logging.getLogger(__name__)

INITIAL_DURATION_S = 12.0
DURATION_SMOOTHING = 0.2
BATCH = 100  # jobs handled per turn of the event loop when there are many
MSG_RESTARTING = "The bot is restarting. Please try again in a minute."

# Runs one job. It calls `call_sent()` as its API call goes out: only then does the job
# count against the per-minute limit (a job refused before its call takes no slot).
Runner = Callable[[Job, Callable[[], None]], Awaitable[Any]]
# The owner's part of a job's end (EditService: the job's row), before its member hears.
Finish = Callable[[Job, JobEnd], Awaitable[None]]


class FairQueue:
    """Round-robin between members, under global concurrency and rate limits."""

    def __init__(
        self,
        runner: Runner,
        limits: QueueLimits | None = None,
        *,
        clock: Clock = REAL_CLOCK,
        finish: Finish | None = None,
    ) -> None:
        self._runner = runner
        self._finish = finish
        self.limits = limits if limits is not None else QueueLimits()
        self._clock = clock
        self.limiter = RateLimiter(self.limits.rpm, clock.now)
        # A list per member: a deque costs ~600 bytes even for one job, lists are short here.
        self._waiting: dict[Member, list[Job]] = {}
        self._order: collections.deque[Member] = collections.deque()  # whose turn is next
        self._running: dict[Member, int] = collections.Counter()
        self._places: dict[Member, int] = collections.Counter()  # held, not queued yet
        # Totals kept as they change: 2,000 members submitting at once must not each sum them.
        self._queued = self._held = 0
        self._jobs: dict[int, Job] = {}
        self._running_jobs: set[Job] = set()
        self._wakeup = asyncio.Event()
        self._accepting = True
        self._stop_reason = "Stopped."
        self._tasks: list[asyncio.Task[None]] = []
        self._rate_timer: asyncio.Task[None] | None = None
        # Jobs' ends being told, each on a task of its own (see `_ended`).
        self._ending: set[asyncio.Task[None]] = set()
        self.avg_duration_s = INITIAL_DURATION_S
        self._next_id = 0

    # -- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._dispatch(), name="queue-dispatch"),
            asyncio.create_task(keep_posted(self, self._clock), name="queue-status"),
        ]

    async def close(self) -> None:
        updates = [j.updating for j in self._jobs.values() if j.updating is not None]
        timers = [self._rate_timer] if self._rate_timer is not None else []
        for task in [*self._tasks, *timers, *updates]:
            task.cancel()
        for task in [*self._tasks, *timers, *updates]:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self._rate_timer = None

    async def drain(self, grace_s: float, *, waiting_reason: str, running_reason: str) -> None:
        """Stop taking jobs, cancel the waiting ones, give running jobs `grace_s` to
        finish, then stop the rest; each job's end is told with the matching reason
        (`told` waits for that)."""
        self._accepting = False
        self._stop_reason = running_reason
        for count, job in enumerate(self.waiting_jobs(), 1):
            self._cancel_waiting(job, waiting_reason)
            if count % BATCH == 0:
                await asyncio.sleep(0)  # their ends are told a batch at a time
        tasks = [j.task for j in self._running_jobs if j.task is not None]
        if tasks:
            await wait_at_most(self._clock, grace_s, tasks)
            pending = [task for task in tasks if not task.done()]
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        await self.close()

    async def told(self, timeout_s: float) -> None:
        """Wait until the ends of the jobs that ended are told (at most `timeout_s`, then
        stop the rest): a shutdown lets members hear what became of their edits."""
        ending = list(self._ending)
        if not ending:
            return
        await wait_at_most(self._clock, timeout_s, ending)
        pending = [task for task in ending if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)

    # -- members' side ------------------------------------------------------------------

    @property
    def waiting_count(self) -> int:
        return self._queued

    @property
    def running_count(self) -> int:
        return len(self._running_jobs)

    @property
    def alive(self) -> bool:
        """True while the dispatcher runs (started, not stopped, not crashed)."""
        return bool(self._tasks) and not any(task.done() for task in self._tasks)

    def waiting_jobs(self) -> list[Job]:
        """The jobs not started yet, in no particular order (see `positions`)."""
        return [job for queue in self._waiting.values() for job in queue]

    def running_jobs(self) -> list[Job]:
        """The jobs started and not yet ended."""
        return list(self._running_jobs)

    def jobs(self) -> list[Job]:
        """Every job the queue holds: waiting or running (an ended job is forgotten)."""
        return list(self._jobs.values())

    def job(self, job_id: int) -> Job | None:
        """The waiting or running job with this id, or None once it ended or was cancelled."""
        return self._jobs.get(job_id)

    def hold_place(self, request: EditRequest, *, resumed: bool = False) -> Place:
        """Keep a waiting place for an edit while it is checked, written down and
        acknowledged; raises QueueFull (or refuses during shutdown) before anything is
        written. The place goes to its job in `submit`, or back with `release_place`.
        A `resumed` edit, accepted before a restart, is not held to the total bound."""
        if not self._accepting:
            raise BadInput(MSG_RESTARTING)
        member = (request.guild_id or 0, request.user_id)
        mine = len(self._waiting.get(member, ())) + self._places[member]
        if mine >= self.limits.per_member_queued:
            raise QueueFull(
                f"You already have {mine} edits waiting. Let one finish (or cancel one) "
                "before adding more. Nothing was charged."
            )
        everyone = self._queued + self._held
        if not resumed and everyone >= self.limits.max_queued_total:
            raise QueueFull(
                f"The bot has {everyone} edit{'s' if everyone != 1 else ''} waiting, as many "
                "as it takes at a time. Please try again in a few minutes. Nothing was charged."
            )
        self._places[member] += 1
        self._held += 1
        return Place(member)

    def release_place(self, place: Place) -> None:
        """Give a place back (its edit was refused or abandoned); safe to call twice."""
        if place.held:
            place.held = False
            self._places[place.member] -= 1
            self._held -= 1
            if not self._places[place.member]:
                del self._places[place.member]

    def has_room(self, request: EditRequest) -> bool:
        """Whether an edit whose place is held would start at once once queued: no one
        waiting, and a free slot for it and every other place held (so at most one input
        is fetched ahead per free slot)."""
        member = (request.guild_id or 0, request.user_id)
        return (
            self._queued == 0
            and self.running_count + self._held <= self.limits.max_concurrency
            and self._running[member] < self.limits.per_member_running
            and self.limiter.delay() == 0
        )

    def submit(
        self,
        request: EditRequest,
        *,
        on_progress: ProgressHook | None = None,
        on_end: EndHook | None = None,
        to: object = None,
        job_id: int | None = None,
        place: Place | None = None,
        resumed: bool = False,
        keep_request: bool = True,
    ) -> Job:
        """Queue an edit in the place held for it (or a new one); `on_end` hears how it
        ended, and `to` is kept for the runner. Without `keep_request`, the job holds no
        request: its runner reads it back (EditService: from the job's row). Raises
        QueueFull."""
        if place is None:
            place = self.hold_place(request, resumed=resumed)
        self.release_place(place)  # the job takes it
        if not self._accepting:
            raise BadInput(MSG_RESTARTING)
        member = (request.guild_id or 0, request.user_id)
        queue = self._waiting.get(member)
        if job_id is None:
            self._next_id += 1
            job_id = self._next_id
        job = Job(
            id=job_id,
            member=member,
            request=request if keep_request else None,
            on_progress=on_progress,
            on_end=on_end,
            enqueued_at=self._clock.now(),
            to=to,
        )
        self._jobs[job.id] = job
        if queue is None:
            self._waiting[member] = queue = []
            self._order.append(member)
        queue.append(job)
        self._queued += 1
        self._wakeup.set()
        return job

    def owner_of(self, job_id: int) -> int | None:
        job = self._jobs.get(job_id)
        return None if job is None else job.member[1]

    def cancel(self, job_id: int, user_id: int) -> bool:
        """Cancel a waiting job of this member's; False when it is running or gone."""
        job = self._jobs.get(job_id)
        if job is None or job.member[1] != user_id or job.started_at is not None:
            return False
        self._cancel_waiting(job, "Cancelled. You were not charged.")
        return True

    def _cancel_waiting(self, job: Job, reason: str) -> None:
        if job.started_at is not None:
            return  # started meanwhile: its end is told when it ends
        queue = self._waiting.get(job.member)
        if queue is not None and job in queue:
            queue.remove(job)
            self._queued -= 1
            if not queue:
                del self._waiting[job.member]
                self._order.remove(job.member)
        if self._jobs.pop(job.id, None) is not None:  # told once
            self._ended(job, job.ended(error=JobCancelled(reason)))

    def progress(self, job: Job, positions: dict[int, int] | None = None) -> Progress:
        if job.started_at is not None:
            return Progress(job.id, "running", elapsed_s=self._clock.now() - job.started_at)
        ahead = (positions if positions is not None else self.positions()).get(job.id, 0)
        rounds = (ahead + self.running_count) // self.limits.max_concurrency + 1
        # It cannot start before the per-minute limit lets `ahead + 1` more calls out.
        by_rate = self.limiter.wait_for(ahead + 1) + self.avg_duration_s
        eta = max(rounds * self.avg_duration_s, by_rate)
        return Progress(job.id, "queued", ahead=ahead, eta_s=eta)

    def positions(self) -> dict[int, int]:
        """For every waiting job, how many start before it, taking turns as the dispatcher
        does (see `bot.queue_status.turn_positions`)."""
        return turn_positions([self._waiting[m] for m in self._order])

    # -- dispatcher ---------------------------------------------------------------------

    def _next_job(self) -> Job | None:
        """The first member in turn order with a waiting job and room to run it; that
        member then goes to the back of the line (members skipped keep their place).
        None once a drain began: what waits then is cancelled, never started."""
        if not self._accepting:
            return None
        for member in self._order:
            if self._running[member] >= self.limits.per_member_running:
                continue
            queue = self._waiting[member]
            job = queue.pop(0)
            self._queued -= 1
            self._order.remove(member)
            if queue:
                self._order.append(member)
            else:
                del self._waiting[member]
            return job
        return None

    async def _dispatch(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self.running_count < self.limits.max_concurrency:
                delay = self.limiter.delay()
                if delay > 0:
                    # Try again when the rate window allows (a job ending wakes us too).
                    if math.isfinite(delay):
                        self._wake_after(delay)
                    break
                job = self._next_job()
                if job is None:
                    break
                job.slot = self.limiter.hold()
                self._launch(job)

    def _wake_after(self, delay: float) -> None:
        """Wake the dispatcher after `delay` seconds on the queue's clock. One timer at a
        time: the newest delay is computed from the current window, so it replaces the last."""
        if self._rate_timer is not None:
            self._rate_timer.cancel()
        self._rate_timer = asyncio.create_task(self._sleep_then_wake(delay), name="queue-rate")

    async def _sleep_then_wake(self, delay: float) -> None:
        await self._clock.sleep(delay)
        self._wakeup.set()

    def _launch(self, job: Job) -> None:
        job.started_at = self._clock.now()
        self._running[job.member] += 1
        self._running_jobs.add(job)
        job.task = asyncio.create_task(self._run(job), name=f"edit-job-{job.id}")

    async def _run(self, job: Job) -> None:
        slot = job.slot
        assert slot is not None

        def call_sent() -> None:
            self.limiter.use(slot)

        end = None
        try:
            outcome = await self._runner(job, call_sent)
        except asyncio.CancelledError:
            end = job.ended(error=JobCancelled(self._stop_reason))
            raise
        except Exception as exc:  # noqa: BLE001 - told to whoever hears of the job's end
            end = job.ended(error=exc)
        else:
            now = self._clock.now()
            duration = now - (job.started_at or now)
            self.avg_duration_s += DURATION_SMOOTHING * (duration - self.avg_duration_s)
            end = job.ended(result=outcome)
        finally:
            self.limiter.release(slot)  # a slot its job never used is free again at once
            self._running[job.member] -= 1
            self._running_jobs.discard(job)
            self._jobs.pop(job.id, None)
            self._wakeup.set()
            if end is not None:
                self._ended(job, end)

    def _ended(self, job: Job, end: JobEnd) -> None:
        """Tell a job's end on a task of its own: its slot is free already, and a job
        cancelled while waiting has no task at all."""
        self.tell(self._tell(job, end), job.id)

    def tell(self, telling: Coroutine[Any, Any, None], job_id: int | None = None) -> None:
        """Run `telling` (how an edit ended, told to its member) on a task of its own; a
        shutdown waits for these (`told`). One member's message failing stops no other."""
        task = asyncio.create_task(_logged(telling, job_id), name=f"edit-end-{job_id}")
        self._ending.add(task)
        task.add_done_callback(self._ending.discard)

    async def _tell(self, job: Job, end: JobEnd) -> None:
        if self._finish is not None:
            await self._finish(job, end)
        if job.on_end is not None:
            await job.on_end(end)


async def _logged(telling: Coroutine[Any, Any, None], job_id: int | None) -> None:
    try:
        await telling
    except Exception:
        log.exception("Telling how edit %s ended failed", job_id)
