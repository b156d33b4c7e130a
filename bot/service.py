"""The front door for every edit: the job is written down, queued fairly, run, delivered.

Delivery is part of the job, so a graceful shutdown waits for the result to reach the
member, and a crash between the API's answer and the upload leaves the bytes on disk for
start-up to deliver. Nothing waits on a queued job: how it ended (a failure, a cancel, a
restart) reaches its member through the hook it was submitted with (`on_end`).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot import jobs
from bot.clock import REAL_CLOCK, Clock, wait_at_most
from bot.db import generations
from bot.db import jobs as job_rows
from bot.db.connection import Database
from bot.delivery import Delivery
from bot.errors import BadInput
from bot.images import ApiInput
from bot.logs import bind
from bot.pipeline import EditPipeline
from bot.ports import Posted, Poster
from bot.queue import EndHook, FairQueue, Job, JobEnd, Place, ProgressHook, QueueFull, QueueLimits
from bot.requests import EditOutcome, EditRequest

log = logging.getLogger(__name__)

# Waits between tries at closing a refused edit's row the database would not close.
CLOSE_RETRY_S = (1.0, 2.0, 5.0, 10.0, 30.0)
# How long a shutdown waits, after the edits stopped, for members to be told of their ends.
TELL_GRACE_S = 5.0
# Edits checked and written down at once: enough that the database thread always has the
# next read queued and the job rows share commits (2,000 handed over at once: acknowledged
# p95 1.2 s with 8, 0.7-0.9 s with 32); the rest of a burst waits as small records
# (`Admission`), not as thousands of suspended checks.
ADMITTERS = 32
# Shows the member their edit was taken (a "thinking..." reply, a reaction).
Acknowledge = Callable[[], Awaitable[None]]
MSG_TOO_MANY_AT_ONCE = (
    "The bot is taking in more edits than it can check right now. Please try again in a "
    "minute. Nothing was charged."
)
MSG_RESTARTING = "The bot is restarting, so your edit was not started. You were not charged."
MSG_RESTARTING_RUNNING = (
    "The bot is restarting in the middle of your edit. If it had already finished, it will "
    "be posted here when the bot is back; otherwise you were not charged."
)


@dataclass(frozen=True, slots=True)
class Destination:
    """Where a job's result goes: a poster, and how the card reads."""

    poster: Poster
    note: str | None = None
    ping: bool = False


@dataclass(eq=False, slots=True)
class Admission:
    """An edit handed over (`EditService.submit`), not yet checked and written down."""

    request: EditRequest
    to: Destination | None
    on_end: EndHook | None
    on_progress: ProgressHook | None
    acknowledge: Acknowledge | None
    reply_to_message_id: int | None
    job_id: int | None  # an edit accepted before a restart, written down already


class EditService:
    def __init__(
        self,
        database: Database,
        pipeline: EditPipeline,
        delivery: Delivery,
        limits: QueueLimits,
        *,
        clock: Clock = REAL_CLOCK,
    ) -> None:
        self._db = database
        self.pipeline = pipeline
        self._delivery = delivery
        self._clock = clock
        self.queue = FairQueue(self._execute, limits, clock=clock, finish=self._finish)
        # Edits handed over, checked and written down by at most ADMITTERS tasks at once,
        # then acknowledged each on a task of its own (Discord answers in its own time).
        self._admissions: collections.deque[Admission] = collections.deque()
        self._new_admissions = 0  # of them, those not resumed after a restart
        self._admitters: set[asyncio.Task[None]] = set()
        self._acknowledging: set[asyncio.Task[None]] = set()
        # Inputs being fetched for jobs that start at once (at most one per free slot).
        self._prepared: dict[int, asyncio.Task[ApiInput]] = {}
        self._stopped: asyncio.Future[None] | None = None
        # Rows of refused edits the database would not close yet (job id -> state).
        self._unclosed: dict[int, str] = {}
        self._closer: asyncio.Task[None] | None = None
        # Called with each job's wait (seconds from joining the queue) when it starts.
        self.started_hooks: list[Callable[[float], object]] = []

    def start(self) -> None:
        self.queue.start()

    def submit(
        self,
        request: EditRequest,
        *,
        to: Destination | None = None,
        on_end: EndHook | None = None,
        reply_to_message_id: int | None = None,
        on_progress: ProgressHook | None = None,
        job_id: int | None = None,
        acknowledge: Acknowledge | None = None,
    ) -> None:
        """Hand an edit over and return at once. In turn it is checked (refused when the
        member has too many waiting, is out of allowance...), written down, then
        `acknowledge`d to the member, then queued. Written down before acknowledged: a
        crash in between can cost the member a surprise result, never an edit they saw
        accepted. With `to`, the job delivers its result there and its result is the
        `Posted` message. `on_end` hears once how it ended, a refusal included (see
        `JobEnd`). `job_id`: an edit accepted before a restart, queued again."""
        adm = Admission(request, to, on_end, on_progress, acknowledge, reply_to_message_id, job_id)
        if job_id is None:
            if self._new_admissions >= self.queue.limits.max_queued_total:
                # More wait to be checked than the queue would take: while the checks are
                # slow, a burst must not pile up in memory behind them. (Edits resumed
                # after a restart are neither counted nor refused.)
                self.pipeline.refused_unchecked(request)
                self._refused(adm, None, QueueFull(MSG_TOO_MANY_AT_ONCE))
                return
            self._new_admissions += 1
        self._admissions.append(adm)
        if len(self._admitters) < ADMITTERS:
            task = asyncio.create_task(self._admit_all(), name="edit-admission")
            self._admitters.add(task)
            task.add_done_callback(self._admitters.discard)

    async def _admit_all(self) -> None:
        while self._admissions:
            adm = self._admissions.popleft()
            if adm.job_id is None:
                self._new_admissions -= 1
            await self._admit(adm)

    async def _admit(self, adm: Admission) -> None:
        request, job_id = adm.request, adm.job_id
        place = prepared = None
        try:
            place = self.queue.hold_place(request, resumed=job_id is not None)
            await self.pipeline.precheck(request)
            # Only an edit that passed its checks costs a download, and it overlaps the
            # job row, the acknowledgement and the durable start.
            prepared = self.prepare(request)
            if job_id is None:
                job_id = await jobs.add(
                    self._db, request, reply_to_message_id=adm.reply_to_message_id
                )
        except BaseException as exc:
            if prepared is not None:
                prepared.cancel()
            if place is not None:
                self.queue.release_place(place)
            elif isinstance(exc, BadInput):  # the queue's own bounds, before any check
                self.pipeline.refused_unchecked(request)
            if job_id is not None:  # a job resumed after a restart: it ends here
                await self._close_row(job_id, "failed")
            if not isinstance(exc, Exception):
                raise
            self._refused(adm, job_id, exc)
            return
        request = dataclasses.replace(request, job_id=job_id)
        if adm.acknowledge is None:
            await self._enqueue(adm, request, place, prepared)
            return
        # The acknowledgement waits on Discord: on a task of its own, so the next edits
        # are checked meanwhile.
        task = asyncio.create_task(
            self._enqueue(adm, request, place, prepared), name=f"edit-acknowledge-{job_id}"
        )
        self._acknowledging.add(task)
        task.add_done_callback(self._acknowledging.discard)

    async def _enqueue(
        self,
        adm: Admission,
        request: EditRequest,
        place: Place,
        prepared: asyncio.Task[ApiInput] | None,
    ) -> None:
        assert request.job_id is not None
        try:
            if adm.acknowledge is not None:
                await adm.acknowledge()
            self.queue.submit(
                request,
                on_progress=adm.on_progress,
                on_end=adm.on_end,
                to=adm.to,
                job_id=request.job_id,
                place=place,
                # One that waits holds no request: it is read back from its row to start.
                keep_request=prepared is not None,
            )
        except BaseException as exc:
            self.queue.release_place(place)
            if prepared is not None:
                prepared.cancel()
            await self._close_row(request.job_id, "cancelled")
            if not isinstance(exc, Exception):
                raise
            self._refused(adm, request.job_id, exc)
            return
        if prepared is not None:
            self._prepared[request.job_id] = prepared

    async def _close_row(self, job_id: int, state: str) -> None:
        """End the row of an edit refused while handed over. A database that fails here
        must not keep its member from hearing why (nor stop the admitter, whose queue
        would wait for the next edit); the row is closed later (`_close_unclosed`)."""
        try:
            await job_rows.mark_finished(self._db, job_id, state)
        except Exception:
            log.exception("Could not mark job %d %s; trying again", job_id, state)
            self._unclosed[job_id] = state
            if self._closer is None or self._closer.done():
                self._closer = asyncio.create_task(self._close_unclosed(), name="job-closer")

    async def _close_unclosed(self) -> None:
        """Close the rows `_close_row` could not, for as long as it takes: left 'queued', a
        restart would run (and charge) an edit its member was told was refused."""
        for attempt in itertools.count():
            if not self._unclosed:
                return
            await self._clock.sleep(CLOSE_RETRY_S[min(attempt, len(CLOSE_RETRY_S) - 1)])
            if not await self._close_what_is_left():
                log.warning("Still cannot close %d job rows", len(self._unclosed))

    async def _close_what_is_left(self) -> bool:
        """One try at every row left open; False if the database still fails."""
        for job_id, state in list(self._unclosed.items()):
            try:
                await job_rows.mark_finished(self._db, job_id, state)
            except Exception:  # noqa: BLE001 - told by the callers
                return False
            del self._unclosed[job_id]
        return True

    def _refused(self, adm: Admission, job_id: int | None, error: Exception) -> None:
        if adm.on_end is not None:
            self.queue.tell(adm.on_end(JobEnd(job_id, error=error)), job_id)

    def prepare(self, request: EditRequest) -> asyncio.Task[ApiInput] | None:
        """When the edit would start at once, start fetching and proving its input now
        (it overlaps the checks, the job row and the acknowledgement); None when it would
        wait (a waiting job holds no image)."""
        if not self.queue.has_room(request):
            return None
        return self.pipeline.prepare_input(request.image)

    async def run(
        self,
        request: EditRequest,
        *,
        to: Destination,
        reply_to_message_id: int | None = None,
        on_progress: ProgressHook | None = None,
        acknowledge: Acknowledge | None = None,
    ) -> Posted:
        """Queue an edit (see `submit`) and wait until its result is posted; raises what
        refused or stopped it. For a caller that has nothing else to do meanwhile (the
        benchmark): the bot's cogs submit and return."""
        ended: asyncio.Future[JobEnd] = asyncio.get_running_loop().create_future()

        async def on_end(end: JobEnd) -> None:
            if not ended.done():
                ended.set_result(end)

        self.submit(
            request,
            to=to,
            on_end=on_end,
            reply_to_message_id=reply_to_message_id,
            on_progress=on_progress,
            acknowledge=acknowledge,
        )
        end = await ended
        if end.error is not None:
            raise end.error
        return end.result  # type: ignore[return-value]

    def cancel(self, job_id: int, user_id: int) -> bool:
        return self.queue.cancel(job_id, user_id)

    def owner_of(self, job_id: int) -> int | None:
        return self.queue.owner_of(job_id)

    async def _finish(self, job: Job, end: JobEnd) -> None:
        """A job cancelled before it started: drop its early input, mark its row (a
        shutdown marks them all at once). A job that ran marked its own."""
        if job.started_at is not None:
            return
        prepared = self._prepared.pop(job.id, None)
        if prepared is not None:
            prepared.cancel()
        if self._stopped is None:
            await job_rows.mark_finished(self._db, job.id, "cancelled")

    async def _execute(self, job: Job, call_sent: Callable[[], None]) -> EditOutcome | Posted:
        job_id = job.id
        started = time.monotonic()
        to: Destination | None = job.to
        prepared = self._prepared.pop(job_id, None)
        try:
            request = job.request or await jobs.request_of(self._db, job_id)
            await job_rows.mark_running(self._db, job_id)
        except BaseException:
            if prepared is not None:
                prepared.cancel()
            raise
        # This runs in the job's own task: what is bound here stays with this job.
        bind(job_id=job_id, guild_id=request.guild_id, source=request.source)
        if job.started_at is not None:
            for hook in self.started_hooks:
                hook(job.started_at - job.enqueued_at)
        try:
            outcome = await self.pipeline.run(request, on_call=call_sent, prepared=prepared)
            result: EditOutcome | Posted = outcome
            if to is not None:
                result = await self._delivery.deliver(
                    outcome, to.poster, requester_id=request.user_id, note=to.note, ping=to.ping
                )
        except asyncio.CancelledError:
            # Shutdown. An edit the pipeline gave up (refunded) ends here: its member is told
            # now. One whose result exists stays 'running' for start-up to deliver.
            gen = await generations.of_job(self._db, job_id)
            if gen is None or gen.status != "succeeded":
                await job_rows.mark_finished(self._db, job_id, "failed")
            raise
        except BaseException:
            await job_rows.mark_finished(self._db, job_id, "failed")
            self._log_end(job_id, "failed", started)
            raise
        await job_rows.mark_finished(self._db, job_id, "done")
        self._log_end(job_id, "done", started)
        return result

    @staticmethod
    def _log_end(job_id: int, state: str, started: float) -> None:
        duration = time.monotonic() - started
        log.info(
            "Job %d %s after %.1fs",
            job_id,
            state,
            duration,
            extra={"status": state, "duration_s": round(duration, 3)},
        )

    async def shutdown(self, grace_s: float) -> None:
        """Stop taking edits, let running ones finish for `grace_s`, stop the rest.
        Later calls wait for the first one."""
        if self._stopped is None:
            self._stopped = asyncio.ensure_future(self._shutdown_once(grace_s))
        await asyncio.shield(self._stopped)

    async def _shutdown_once(self, grace_s: float) -> None:
        waiting = self.queue.waiting_jobs()
        await self.queue.drain(
            grace_s, waiting_reason=MSG_RESTARTING, running_reason=MSG_RESTARTING_RUNNING
        )
        await job_rows.mark_many_finished(self._db, [job.id for job in waiting], "cancelled")
        # Edits still being handed over are refused now (the queue takes no more).
        admitting = [*self._admitters, *self._acknowledging]
        if admitting:
            await wait_at_most(self._clock, TELL_GRACE_S, admitting)
        await self.queue.told(TELL_GRACE_S)
        if self._closer is not None:
            self._closer.cancel()
        if self._unclosed and not await self._close_what_is_left():
            log.error(
                "Job rows %s could not be closed: the next start runs those edits again",
                sorted(self._unclosed),
            )
