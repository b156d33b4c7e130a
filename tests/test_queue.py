"""The fair queue in front of the API, driven by a runner whose jobs end when a test says.

Real asyncio throughout: the queue's own dispatcher and status tasks run; only the work
(the API call) is replaced by a gate the test opens, and time by a clock it moves. The
queue waits only on that clock, so "nothing happened" is shown by letting every woken
task run (`settle`), never by sleeping.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import time
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from bot import db, jobs
from bot.db import jobs as db_jobs
from bot.delivery import Delivery
from bot.errors import BadInput
from bot.queue import (
    BATCH,
    INITIAL_DURATION_S,
    FairQueue,
    Job,
    JobCancelled,
    JobEnd,
    Progress,
    QueueFull,
    QueueLimits,
)
from bot.requests import EditOutcome, EditRequest
from bot.results import ResultStore
from bot.service import ADMITTERS, CLOSE_RETRY_S, MSG_TOO_MANY_AT_ONCE, EditService
from tests.clock import ManualClock, advance, settle, until
from tests.helpers import make_edit_outcome, make_edit_request

ALICE, BOB, CAROL, DAVE, ZOE = 101, 102, 103, 104, 199


class Gate:
    """The queue's runner: each job (labelled by its prompt) runs until `finish(label)`."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.started: list[str] = []
        self.started_at: dict[str, float] = {}
        self.finished: list[str] = []
        self.running = 0
        self.max_running = 0
        self._release: dict[str, asyncio.Event] = {}
        self._errors: dict[str, Exception] = {}
        self.ends: dict[int, JobEnd] = {}
        self.heard: list[int] = []  # each job's id, once per end told
        self.requests: dict[str, EditRequest] = {}  # what each job ran with

    def _event(self, label: str) -> asyncio.Event:
        return self._release.setdefault(label, asyncio.Event())

    async def run(self, job: Job, call_sent: Callable[[], None]) -> EditOutcome:
        """The queue's runner."""
        return await self.work(job.request, call_sent)

    async def work(self, request: EditRequest, call_sent: Callable[[], None]) -> EditOutcome:
        """Labels starting with "refused" end (when finished) without an API call, as an
        edit refused for its allowance does; every other job sends its call at once."""
        label = request.params.prompt
        self.requests[label] = request
        self.started.append(label)
        self.started_at[label] = self.clock.now()
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        if not label.startswith("refused"):
            call_sent()
        try:
            await self._event(label).wait()
            if label in self._errors:
                raise self._errors[label]
            self.finished.append(label)
            return make_edit_outcome(len(self.finished), filename=f"{label}.png")
        finally:
            self.running -= 1

    def finish(self, label: str, error: Exception | None = None) -> None:
        if error is not None:
            self._errors[label] = error
        self._event(label).set()

    async def until_started(self, count: int, timeout: float = 2.0) -> list[str]:  # noqa: ASYNC109
        await until(lambda: len(self.started) >= count, timeout)
        return self.started

    async def hear(self, end: JobEnd) -> None:
        """A job's end hook, as a member's would be."""
        self.ends[end.job_id] = end
        self.heard.append(end.job_id)

    async def told(self, job: Job, end: JobEnd) -> None:
        """The queue's owner's part of every end (a queue made by `make_queue`)."""
        await self.hear(end)

    def ended(self, job: Job) -> bool:
        return job.id in self.ends

    async def outcome(self, job: Job) -> EditOutcome:
        """The job's outcome once its end is told; raises what stopped it."""
        await until(lambda: self.ended(job))
        end = self.ends[job.id]
        if end.error is not None:
            raise end.error
        assert isinstance(end.result, EditOutcome)
        return end.result


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def gate(clock: ManualClock) -> Gate:
    return Gate(clock)


def make_queue(runner: Gate, **limits: Any) -> FairQueue:
    """A queue on the gate's clock, with these limits (the rest at their defaults); the
    gate hears how each job ended."""
    return FairQueue(runner.run, QueueLimits(**limits), clock=runner.clock, finish=runner.told)


def submit(queue: FairQueue, user_id: int, label: str, **kwargs: Any) -> Job:
    return queue.submit(make_edit_request(user_id, label), **kwargs)


StartQueue = Callable[..., FairQueue]


@pytest.fixture
async def start_queue(gate: Gate) -> AsyncIterator[StartQueue]:
    """Start a queue on the gate with these limits; each is drained (running jobs stopped)
    and closed afterwards."""
    queues: list[FairQueue] = []

    def start(**limits: Any) -> FairQueue:
        queue = make_queue(gate, **limits)
        queues.append(queue)
        queue.start()
        return queue

    yield start
    for queue in queues:
        await queue.drain(0, waiting_reason="test over", running_reason="test over")
        await queue.told(1.0)


async def hold_the_slot(gate: Gate, queue: FairQueue, user_id: int = ZOE, label: str = "Z1") -> Job:
    """A job (Zoe's by default) starts and holds the slot; what the test submits next
    waits behind it."""
    job = submit(queue, user_id, label)
    await gate.until_started(1)
    return job


async def run_one_at_a_time(gate: Gate, first: str, total: int) -> list[str]:
    """Finish `first`, then each job as it starts, until `total` have started; the order."""
    gate.finish(first)
    for count in range(2, total + 1):
        await gate.until_started(count)  # one slot: the next starts only after the last ended
        gate.finish(gate.started[count - 1])
    return gate.started


def labels(prefix: str, count: int) -> Iterable[str]:
    return (f"{prefix}{n}" for n in range(1, count + 1))


# -- fairness and limits ------------------------------------------------------------------


async def test_members_take_turns_instead_of_first_come_first_served(
    gate: Gate, start_queue: StartQueue
) -> None:
    queue = start_queue(max_concurrency=1, per_member_queued=5)
    await hold_the_slot(gate, queue)
    # While the only slot is busy, Alice fires five edits, then Bob and Carol two each.
    for label in labels("A", 5):
        submit(queue, ALICE, label)
    for label in labels("B", 2):
        submit(queue, BOB, label)
    for label in labels("C", 2):
        submit(queue, CAROL, label)

    order = await run_one_at_a_time(gate, "Z1", total=10)

    assert order == ["Z1", "A1", "B1", "C1", "A2", "B2", "C2", "A3", "A4", "A5"]


async def test_a_members_second_edit_waits_while_other_members_run(
    gate: Gate, start_queue: StartQueue
) -> None:
    queue = start_queue(max_concurrency=3, per_member_running=1)
    submit(queue, ALICE, "A1")
    second = submit(queue, ALICE, "A2")
    submit(queue, BOB, "B1")
    await gate.until_started(2)
    await settle()

    # A slot is free, but Alice already has her one edit running.
    assert sorted(gate.started) == ["A1", "B1"]
    assert queue.progress(second).state == "queued"
    assert queue.running_count == 2

    gate.finish("B1")
    await settle()
    assert "A2" not in gate.started  # Bob finishing does not free Alice's turn
    gate.finish("A1")
    await gate.until_started(3)
    assert gate.started[-1] == "A2"
    assert queue.progress(second).state == "running"


async def test_global_concurrency_is_never_exceeded(gate: Gate, start_queue: StartQueue) -> None:
    queue = start_queue(max_concurrency=2, per_member_running=2, per_member_queued=3)
    members = (ALICE, BOB, CAROL, DAVE)
    for n in range(1, 4):
        for member in members:
            submit(queue, member, f"{member}-{n}")
    total = len(members) * 3

    while len(gate.finished) < total:
        await until(lambda: gate.running == min(2, total - len(gate.finished)))
        # Finish the oldest running job; the dispatcher refills the slot.
        running = [label for label in gate.started if label not in gate.finished]
        done_before = len(gate.finished)
        gate.finish(running[0])
        await until(lambda: len(gate.finished) > done_before)  # noqa: B023 - awaited at once

    assert gate.max_running == 2
    assert len(gate.started) == total and queue.running_count == 0


async def test_a_member_over_the_waiting_limit_is_refused_and_nothing_is_queued(
    gate: Gate, start_queue: StartQueue
) -> None:
    queue = start_queue(max_concurrency=1, per_member_running=1, per_member_queued=2)
    await hold_the_slot(gate, queue, ALICE, "A1")
    waiting = [submit(queue, ALICE, "A2"), submit(queue, ALICE, "A3")]

    with pytest.raises(QueueFull, match="Nothing was charged"):
        submit(queue, ALICE, "A4")

    assert queue.waiting_jobs() == waiting
    assert queue.waiting_count == 2
    # Only Alice is at her limit: Bob still gets in.
    bob = submit(queue, BOB, "B1")
    assert queue.waiting_count == 3
    # Cancelling one of hers makes room again.
    assert queue.cancel(waiting[0].id, ALICE)
    submit(queue, ALICE, "A4")
    await run_one_at_a_time(gate, "A1", total=4)
    assert gate.started == ["A1", "A3", "B1", "A4"]
    assert (await gate.outcome(bob)).filename == "B1.png"


async def test_past_the_total_bound_only_an_edit_resumed_after_a_restart_is_queued(
    gate: Gate, start_queue: StartQueue
) -> None:
    queue = start_queue(max_concurrency=1, per_member_queued=3, max_queued_total=2)
    await hold_the_slot(gate, queue, ALICE, "A1")
    submit(queue, BOB, "B1")
    place = queue.hold_place(make_edit_request(CAROL, "C1"))  # being written down
    with pytest.raises(QueueFull, match="2 edits waiting"):
        submit(queue, DAVE, "D1")
    queue.release_place(place)  # Carol's edit was refused after all
    submit(queue, DAVE, "D1")
    with pytest.raises(QueueFull, match="2 edits waiting"):
        submit(queue, ZOE, "Z1")
    # An edit accepted before a restart keeps its place in line.
    submit(queue, ZOE, "Z1", resumed=True)
    assert queue.waiting_count == 3


async def test_the_rate_limit_holds_the_third_start_until_the_minute_has_passed(
    clock: ManualClock, gate: Gate, start_queue: StartQueue
) -> None:
    queue = start_queue(max_concurrency=5, rpm=2)
    t0 = clock.now()
    submit(queue, ALICE, "A1")
    submit(queue, BOB, "B1")
    third = submit(queue, CAROL, "C1")
    await gate.until_started(2)
    await settle()
    assert gate.started == ["A1", "B1"]  # slots are free; the rate limit is not

    await advance(clock, 30)
    gate.finish("A1")  # wakes the dispatcher: still inside the minute
    await settle()
    assert "C1" not in gate.started and queue.progress(third).state == "queued"

    await advance(clock, 29.5)
    assert "C1" not in gate.started
    # B1 still runs, so no job ending wakes the dispatcher: the minute passing alone does.
    await advance(clock, 0.5)
    await gate.until_started(3)
    assert gate.started[-1] == "C1"
    assert gate.started_at["C1"] - t0 == 60


async def test_jobs_refused_before_their_api_call_give_their_rate_slots_back_at_once(
    clock: ManualClock, gate: Gate, start_queue: StartQueue
) -> None:
    queue = start_queue(max_concurrency=4, rpm=2)
    for n, member in enumerate((ALICE, BOB, CAROL, DAVE), start=1):
        submit(queue, member, f"refused{n}")
    await gate.until_started(2)
    for n in range(1, 5):  # each ends, refused, and the next takes the slot it never used
        gate.finish(f"refused{n}")
        await settle()
    assert gate.started[:4] == ["refused1", "refused2", "refused3", "refused4"]

    # The minute has not moved on, yet two real calls may start: nothing was sent.
    submit(queue, ALICE, "A1")
    submit(queue, BOB, "B1")
    third = submit(queue, CAROL, "C1")
    await gate.until_started(6)
    await settle()
    assert gate.started[4:] == ["A1", "B1"] and clock.now() == 1000.0
    assert queue.progress(third).state == "queued"  # the calls sent do fill the window


async def test_the_wait_shown_counts_the_time_until_the_rate_window_frees_a_slot(
    clock: ManualClock, gate: Gate, start_queue: StartQueue
) -> None:
    queue = start_queue(max_concurrency=4, rpm=2)
    submit(queue, ALICE, "A1")
    submit(queue, BOB, "B1")
    await gate.until_started(2)
    await advance(clock, 1)
    gate.finish("A1")
    gate.finish("B1")
    await settle()
    # Nothing runs, but both calls of this minute are spent: the next start is at 60 s.
    c1, d1, e1 = submit(queue, CAROL, "C1"), submit(queue, DAVE, "D1"), submit(queue, ZOE, "E1")
    await settle()
    assert queue.running_count == 0
    duration = queue.avg_duration_s
    shown = [queue.progress(job) for job in (c1, d1, e1)]
    assert [p.ahead for p in shown] == [0, 1, 2]
    assert shown[0].eta_s == pytest.approx(59 + duration)  # "you're next", but in a minute
    assert shown[1].eta_s == pytest.approx(59 + duration)  # the window's second slot
    assert shown[2].eta_s == pytest.approx(119 + duration)  # the minute after
    await advance(clock, 58.5)
    assert gate.started == ["A1", "B1"]
    await advance(clock, 0.5)
    await gate.until_started(4)
    assert gate.started[2:] == ["C1", "D1"]


# -- what waiting members are shown --------------------------------------------------------


async def test_positions_shown_match_the_order_jobs_really_start(
    gate: Gate, start_queue: StartQueue
) -> None:
    queue = start_queue(max_concurrency=1, per_member_queued=5)
    await hold_the_slot(gate, queue)
    waiting = [submit(queue, ALICE, label) for label in labels("A", 4)]
    waiting += [submit(queue, BOB, label) for label in labels("B", 2)]
    waiting += [submit(queue, CAROL, "C1")]
    shown = {job.request.params.prompt: queue.progress(job) for job in waiting}

    order = await run_one_at_a_time(gate, "Z1", total=1 + len(waiting))

    assert all(p.state == "queued" for p in shown.values())
    assert {label: p.ahead for label, p in shown.items()} == {
        label: order.index(label) - 1 for label in shown
    }
    # One slot, one edit running: wait for it, for those ahead, then for your own.
    for p in shown.values():
        assert p.eta_s == pytest.approx((p.ahead + 2) * INITIAL_DURATION_S)


async def test_a_cancelled_edit_moves_the_ones_behind_it_up(
    gate: Gate, start_queue: StartQueue
) -> None:
    queue = start_queue(max_concurrency=1)
    await hold_the_slot(gate, queue)
    alice = submit(queue, ALICE, "A1")
    bob = submit(queue, BOB, "B1")
    assert queue.progress(bob).ahead == 1
    assert queue.cancel(alice.id, ALICE)
    assert queue.progress(bob).ahead == 0


# -- cancelling ----------------------------------------------------------------------------


async def test_a_waiting_edit_can_be_cancelled_by_its_member_only_and_never_runs(
    gate: Gate, start_queue: StartQueue
) -> None:
    queue = start_queue(max_concurrency=1, per_member_queued=3)
    running = submit(queue, ALICE, "A1")
    await gate.until_started(1)
    waiting = submit(queue, ALICE, "A2")
    other = submit(queue, ALICE, "A3")

    assert queue.owner_of(waiting.id) == ALICE
    assert queue.owner_of(9999) is None
    assert not queue.cancel(waiting.id, BOB)  # someone else's edit
    assert not queue.cancel(running.id, ALICE)  # already running
    assert queue.cancel(waiting.id, ALICE)
    assert not queue.cancel(waiting.id, ALICE)  # already gone

    with pytest.raises(JobCancelled, match="not charged"):
        await gate.outcome(waiting)
    assert queue.owner_of(waiting.id) is None
    await run_one_at_a_time(gate, "A1", total=2)
    await settle()
    assert gate.started == ["A1", "A3"]
    assert (await gate.outcome(running)).filename == "A1.png"
    assert (await gate.outcome(other)).filename == "A3.png"


# -- status updates ------------------------------------------------------------------------

STATUS_S = 3.0  # a member hears of their edit at most this often
TICK_S = 1.0  # and the queue looks this often (min(1 s, STATUS_S))


async def test_status_hook_shows_queued_then_running_and_never_too_often(
    clock: ManualClock, gate: Gate, start_queue: StartQueue
) -> None:
    queue = start_queue(max_concurrency=1, status_interval_s=STATUS_S)
    seen: list[tuple[float, Progress]] = []

    async def hook(progress: Progress) -> None:
        seen.append((clock.now(), progress))

    t0 = clock.now()
    await hold_the_slot(gate, queue)
    job = submit(queue, ALICE, "A1", on_progress=hook)
    await advance(clock, TICK_S)
    queued = Progress(job.id, "queued", ahead=0, eta_s=2 * INITIAL_DURATION_S)
    assert seen == [(t0 + 1, queued)]

    gate.finish("Z1")
    await gate.until_started(2)  # A1 runs from t0 + 1
    await advance(clock, TICK_S)
    await advance(clock, TICK_S)
    assert len(seen) == 1  # running now, but the last update was less than an interval ago

    await advance(clock, TICK_S)
    assert seen[1:] == [(t0 + 4, Progress(job.id, "running", elapsed_s=3.0))]
    await advance(clock, TICK_S)
    await advance(clock, TICK_S)
    assert len(seen) == 2
    await advance(clock, TICK_S)
    assert seen[2:] == [(t0 + 7, Progress(job.id, "running", elapsed_s=6.0))]

    gate.finish("A1")
    await gate.outcome(job)
    for _ in range(4):
        await advance(clock, TICK_S)
    assert len(seen) == 3  # nothing after the end
    times = [t for t, _ in seen]
    assert all(b - a >= STATUS_S for a, b in itertools.pairwise(times))


async def test_a_quick_edit_gets_no_status_message_at_all(
    clock: ManualClock, gate: Gate, start_queue: StartQueue
) -> None:
    queue = start_queue(status_interval_s=STATUS_S)
    seen: list[Progress] = []

    async def hook(progress: Progress) -> None:
        seen.append(progress)

    job = submit(queue, ALICE, "A1", on_progress=hook)
    await gate.until_started(1)
    await advance(clock, TICK_S)
    await advance(clock, TICK_S)  # the queue has looked twice; A1 ran for less than STATUS_S
    gate.finish("A1")
    await gate.outcome(job)
    for _ in range(4):
        await advance(clock, TICK_S)
    assert seen == []


async def test_a_failing_status_hook_does_not_stop_the_queue(
    clock: ManualClock, gate: Gate, start_queue: StartQueue
) -> None:
    queue = start_queue(max_concurrency=1, status_interval_s=STATUS_S)
    calls = 0

    async def broken(progress: Progress) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("Discord said no")

    await hold_the_slot(gate, queue)
    job = submit(queue, ALICE, "A1", on_progress=broken)
    await advance(clock, TICK_S)
    assert calls == 1
    gate.finish("Z1")
    await gate.until_started(2)
    for _ in range(3):
        await advance(clock, TICK_S)
    assert calls == 2  # the status updates go on too
    gate.finish("A1")
    assert (await gate.outcome(job)).filename == "A1.png"


# -- shutdown and errors -------------------------------------------------------------------

GRACE_S = 30.0


async def test_drain_lets_a_quick_job_finish_and_stops_a_slow_one(
    clock: ManualClock, gate: Gate
) -> None:
    queue = make_queue(gate, max_concurrency=2, per_member_running=1)
    queue.start()
    quick = submit(queue, ALICE, "A1")
    slow = submit(queue, BOB, "B1")
    waiting = submit(queue, ALICE, "A2")
    await gate.until_started(2)

    draining = asyncio.create_task(
        queue.drain(
            GRACE_S, waiting_reason="restarting: not started", running_reason="restarting: stopped"
        )
    )
    await settle()
    with pytest.raises(JobCancelled, match="restarting: not started"):
        await gate.outcome(waiting)
    with pytest.raises(BadInput, match="restarting"):
        submit(queue, CAROL, "C1")

    await advance(clock, 10)
    gate.finish("A1")
    assert (await gate.outcome(quick)).filename == "A1.png"
    await advance(clock, GRACE_S - 10 - 0.5)
    assert not draining.done() and not gate.ended(slow)  # the slow one still has its grace

    await advance(clock, 0.5)
    await until(draining.done)
    await draining
    with pytest.raises(JobCancelled, match="restarting: stopped"):
        await gate.outcome(slow)
    assert gate.started == ["A1", "B1"]  # the waiting one never ran
    assert queue.running_count == 0 and queue.jobs() == []


async def test_no_waiting_job_starts_once_a_drain_began_and_each_end_is_told_once(
    gate: Gate,
) -> None:
    queue = make_queue(gate, max_concurrency=1, per_member_queued=500, max_queued_total=500)
    queue.start()
    await hold_the_slot(gate, queue)
    waiting = [submit(queue, ALICE, f"A{n}") for n in range(1, 3 * BATCH)]
    # The running job ends as the drain begins: its slot frees between two batches.
    gate.finish("Z1")
    draining = asyncio.create_task(
        queue.drain(GRACE_S, waiting_reason="restarting", running_reason="stopped")
    )
    await until(lambda: draining.done() or len(gate.started) > 1)

    assert gate.started == ["Z1"]
    await draining
    await queue.told(GRACE_S)
    assert sorted(gate.heard) == sorted({job.id for job in [*waiting]} | {1})
    for job in waiting:
        with pytest.raises(JobCancelled, match="restarting"):
            await gate.outcome(job)


async def test_an_error_from_the_runner_reaches_the_jobs_end_and_the_queue_goes_on(
    gate: Gate, start_queue: StartQueue
) -> None:
    queue = start_queue(max_concurrency=1)
    failing = submit(queue, ALICE, "A1")
    after = submit(queue, ALICE, "A2")
    await gate.until_started(1)
    gate.finish("A1", error=ValueError("the API broke"))

    with pytest.raises(ValueError, match="the API broke"):
        await gate.outcome(failing)
    await gate.until_started(2)
    gate.finish("A2")
    assert (await gate.outcome(after)).filename == "A2.png"


# -- EditService: the queue plus the jobs table -------------------------------------------


class GatedPipeline:
    """Stands in for EditPipeline: every check passes and no input is fetched early."""

    def __init__(self, gate: Gate) -> None:
        self.gate = gate

    def prepare_input(self, image: object) -> asyncio.Task[Any]:
        return asyncio.ensure_future(asyncio.sleep(0))

    async def precheck(self, request: EditRequest) -> None:
        """Everything passes: these tests are about the queue and the jobs table."""

    def refused_unchecked(self, request: EditRequest) -> None:
        """Refusals are counted by the real pipeline (tests/test_metrics.py)."""

    async def run(
        self,
        request: EditRequest,
        *,
        on_call: Callable[[], None] | None = None,
        prepared: object = None,
    ) -> EditOutcome:
        return await self.gate.work(request, on_call or (lambda: None))


def start_service(conn: db.Database, gate: Gate, tmp_path: Path, **limits: Any) -> EditService:
    """An EditService on the gated pipeline, with these queue limits, started."""
    edits = EditService(
        conn,
        GatedPipeline(gate),  # type: ignore[arg-type]
        Delivery(conn, ResultStore(conn, tmp_path / "results", retention_s=3600)),
        QueueLimits(**limits),
    )
    edits.start()
    return edits


def slow_checks(service: EditService) -> asyncio.Event:
    """Every edit's checks wait (as on a database that answers slowly) until it is set."""
    checks_done = asyncio.Event()

    async def slow_check(request: EditRequest) -> None:
        await checks_done.wait()

    service.pipeline.precheck = slow_check  # type: ignore[method-assign]
    return checks_done


@pytest.fixture
async def service(conn: db.Database, gate: Gate, tmp_path: Path) -> AsyncIterator[EditService]:
    edits = start_service(
        conn, gate, tmp_path, max_concurrency=1, per_member_running=1, per_member_queued=3
    )
    yield edits
    await edits.shutdown(0)


async def job_states(conn: db.Database) -> list[tuple[int, str]]:
    return [(j.user_id, j.state) for j in await db_jobs.states(conn)]


async def test_service_records_each_job_from_queued_to_done_or_cancelled(
    service: EditService, gate: Gate, conn: db.Database
) -> None:
    service.submit(make_edit_request(ALICE, "A1"), on_end=gate.hear)
    await gate.until_started(1)
    [first] = service.queue.running_jobs()
    service.submit(make_edit_request(BOB, "B1"), on_end=gate.hear)
    await until(lambda: service.queue.waiting_count == 1)
    [second] = service.queue.waiting_jobs()
    assert await job_states(conn) == [(ALICE, "running"), (BOB, "queued")]
    assert service.cancel(second.id, BOB)
    with pytest.raises(JobCancelled):
        await gate.outcome(second)
    gate.finish("A1")
    await gate.outcome(first)
    assert await job_states(conn) == [(ALICE, "done"), (BOB, "cancelled")]


async def test_two_edits_at_once_over_the_limit_leave_no_runnable_job_row(
    service: EditService, gate: Gate, conn: db.Database
) -> None:
    service.submit(make_edit_request(ALICE, "A1"))
    await gate.until_started(1)
    service.submit(make_edit_request(ALICE, "A2"))
    service.submit(make_edit_request(ALICE, "A3"))
    await until(lambda: service.queue.waiting_count == 2)

    service.submit(make_edit_request(ALICE, "A4"), on_end=gate.hear)
    service.submit(make_edit_request(ALICE, "A5"), on_end=gate.hear)
    await until(lambda: len(gate.heard) == 1 or service.queue.waiting_count > 3)

    [refused] = gate.ends.values()
    assert isinstance(refused.error, QueueFull) and refused.job_id is None
    assert service.queue.waiting_count == 3
    # The queue keeps a place for each edit while it is checked and written down, so the
    # refused one never got a row; a restart must not run it (and charge for it): what is
    # left unfinished is exactly what is queued or running.
    assert len(await job_states(conn)) == 4
    left = {job.id for job in await jobs.unfinished(conn)}
    live = {job.id for job in service.queue.waiting_jobs()} | {
        job.id for job in service.queue.running_jobs()
    }
    assert left == live


async def test_a_burst_of_edits_is_checked_a_few_at_a_time_and_each_hears_its_end(
    service: EditService, gate: Gate, conn: db.Database
) -> None:
    checking = 0
    most = 0

    async def precheck(request: EditRequest) -> None:
        nonlocal checking, most
        checking += 1
        most = max(most, checking)
        await asyncio.sleep(0)
        checking -= 1

    service.pipeline.precheck = precheck  # type: ignore[method-assign]
    members = range(1000, 1000 + 3 * ADMITTERS)
    for user_id in members:
        service.submit(make_edit_request(user_id, f"M{user_id}"), on_end=gate.hear)
    await until(lambda: service.queue.waiting_count + service.queue.running_count == len(members))

    assert most == ADMITTERS
    assert len(await job_states(conn)) == len(members)
    assert gate.heard == []  # none refused, none ended yet


async def test_a_waiting_edit_holds_no_request_and_runs_the_one_written_down(
    service: EditService, gate: Gate
) -> None:
    service.submit(make_edit_request(ALICE, "A1"))
    await gate.until_started(1)
    asked = make_edit_request(BOB, "B1", role_ids=(7, 8), parent_id=3, interaction_id=99)
    service.submit(asked, on_end=gate.hear)
    await until(lambda: service.queue.waiting_count == 1)

    [waiting] = service.queue.waiting_jobs()
    assert waiting.request is None  # 2,000 waiting edits would each keep theirs
    gate.finish("A1")
    await gate.until_started(2)
    assert gate.requests["B1"] == dataclasses.replace(asked, job_id=waiting.id)


async def rows_become(conn: db.Database, expected: list[tuple[int, str]], within_s: float) -> None:
    """Wait (in real time) for the job rows to read `expected`."""
    deadline = time.monotonic() + within_s
    while (states := await job_states(conn)) != expected:
        assert time.monotonic() < deadline, states
        await asyncio.sleep(0.05)


async def forge_jobs_that_cannot_finish(conn: db.Database) -> None:
    """As if the disk failed under every later change of a job's state."""
    await conn.write(
        """CREATE TEMP TRIGGER jobs_cannot_finish BEFORE UPDATE OF state ON jobs
           BEGIN SELECT RAISE(ABORT, 'disk I/O error (forged)'); END"""
    )


async def test_an_edit_discord_would_not_acknowledge_is_told_though_its_row_cannot_be_closed(
    service: EditService, gate: Gate, conn: db.Database
) -> None:
    await forge_jobs_that_cannot_finish(conn)

    async def acknowledge() -> None:
        raise RuntimeError("Discord said no")

    service.submit(make_edit_request(ALICE, "A1"), on_end=gate.hear, acknowledge=acknowledge)
    await until(lambda: len(gate.heard) == 1)

    [end] = gate.ends.values()
    assert isinstance(end.error, RuntimeError) and str(end.error) == "Discord said no"
    assert gate.started == [] and service.queue.waiting_count == 0
    # Left 'queued', a restart would run it: once the database works again, it is closed.
    assert await job_states(conn) == [(ALICE, "queued")]
    await conn.write("DROP TRIGGER jobs_cannot_finish")
    await rows_become(conn, [(ALICE, "cancelled")], within_s=CLOSE_RETRY_S[0] + 2)


async def test_an_edit_resumed_after_a_restart_and_refused_is_told_though_its_row_cannot_be_closed(
    service: EditService, gate: Gate, conn: db.Database
) -> None:
    request = make_edit_request(ALICE, "A1")
    job_id = await jobs.add(conn, request, reply_to_message_id=None)
    await forge_jobs_that_cannot_finish(conn)

    async def blocked(request: EditRequest) -> None:
        raise BadInput("You are blocked here.")

    service.pipeline.precheck = blocked  # type: ignore[method-assign]
    service.submit(request, on_end=gate.hear, job_id=job_id)
    await until(lambda: len(gate.heard) == 1)

    assert str(gate.ends[job_id].error) == "You are blocked here."
    assert gate.started == []
    assert await job_states(conn) == [(ALICE, "queued")]
    await conn.write("DROP TRIGGER jobs_cannot_finish")
    await rows_become(conn, [(ALICE, "failed")], within_s=CLOSE_RETRY_S[0] + 2)


async def test_a_burst_past_what_the_queue_takes_is_refused_at_once_while_checks_are_slow(
    conn: db.Database, gate: Gate, tmp_path: Path
) -> None:
    bound = ADMITTERS + 18  # more than are checked at once: some wait their turn
    service = start_service(conn, gate, tmp_path, max_concurrency=1, max_queued_total=bound)
    checks_done = slow_checks(service)
    refusals: list[JobEnd] = []

    async def heard(end: JobEnd) -> None:
        refusals.append(end)

    for user_id in range(1000, 1000 + bound + 100):
        service.submit(make_edit_request(user_id, f"M{user_id}"), on_end=heard)

    # `bound` are handed over (ADMITTERS being checked, the rest waiting their turn): the
    # other 100 hear at once, and no backlog builds up behind the slow checks.
    await until(lambda: len(refusals) == 100)
    assert {str(end.error) for end in refusals} == {MSG_TOO_MANY_AT_ONCE}
    assert all(isinstance(end.error, QueueFull) and end.job_id is None for end in refusals)

    checks_done.set()
    queue = service.queue
    await until(lambda: queue.waiting_count + queue.running_count == bound)
    assert len(refusals) == 100
    await service.shutdown(0)


async def test_edits_resumed_after_a_restart_do_not_use_up_the_bound_on_new_ones(
    conn: db.Database, gate: Gate, tmp_path: Path
) -> None:
    service = start_service(conn, gate, tmp_path, max_concurrency=1, max_queued_total=ADMITTERS + 2)
    checks_done = slow_checks(service)
    heard: list[JobEnd] = []

    async def hear(end: JobEnd) -> None:
        heard.append(end)

    for user_id in range(1000, 1000 + 3 * ADMITTERS):  # as recovery hands them over
        request = make_edit_request(user_id, f"R{user_id}")
        service.submit(request, job_id=await jobs.add(conn, request, reply_to_message_id=None))
    service.submit(make_edit_request(ALICE, "A1"), on_end=hear)
    await asyncio.sleep(0.05)

    assert heard == []  # not refused for the resumed edits still waiting to be checked
    checks_done.set()  # then the queue's own bound judges it: the resumed fill it
    await until(lambda: bool(heard))
    [end] = heard
    assert isinstance(end.error, QueueFull) and str(end.error) != MSG_TOO_MANY_AT_ONCE
    await service.shutdown(0)


def test_a_job_row_gives_back_the_request_it_was_written_from() -> None:
    asked = dataclasses.replace(
        make_edit_request(ALICE, "A1"),
        role_ids=(7, 8),
        parent_id=3,
        interaction_id=99,
        channel_nsfw=True,
        job_id=5,
    )
    text = jobs.request_to_json(asked)
    assert "job_id" not in json.loads(text)  # the row's own id stands for it
    assert jobs.request_from_json(text, 5) == asked
