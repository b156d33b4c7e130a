"""What the fair queue keeps: its limits, the places held for edits being written down,
and each job, waiting or running, as a small record; and how a job's end is told.

A waiting job is data only (no task, no future): thousands may wait, and each costs the
bot only its record. Its end reaches its member through the hook it carries (`on_end`),
called once, however it ended.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bot.errors import BadInput, UserError
from bot.queue_status import ProgressHook
from bot.requests import EditOutcome, EditRequest

if TYPE_CHECKING:
    from bot.ports import Posted
    from bot.ratelimit import Slot

Member = tuple[int, int]  # (guild id, user id)


class QueueFull(BadInput):
    """The member already has as many edits waiting as allowed."""


class JobCancelled(UserError):
    """The member (or a shutdown) cancelled a job before it started."""


@dataclass(frozen=True)
class QueueLimits:
    """How much the queue lets run and wait, and how often waiting members hear of it."""

    max_concurrency: int = 4
    rpm: int = 50
    per_member_running: int = 1
    per_member_queued: int = 3
    max_queued_total: int = 200  # waiting across all members and servers
    status_interval_s: float = 3.0


@dataclass(frozen=True, slots=True)
class JobEnd:
    """How a job ended: its result (EditService: the posted message, or the outcome when
    nothing was to be posted), or the error that stopped it (JobCancelled when it was
    cancelled, or stopped by a shutdown; a refusal when it was never queued)."""

    job_id: int | None  # None: refused before it was written down
    result: EditOutcome | Posted | None = None
    error: BaseException | None = None
    waited_s: float | None = None  # from joining the queue to starting; None if it never ran


# Told once, when the job ends, however it ended; never while the queue holds a slot for it.
EndHook = Callable[[JobEnd], Awaitable[None]]


@dataclass(eq=False, slots=True)
class Place:
    """A waiting place kept for an edit not queued yet (see `FairQueue.hold_place`)."""

    member: Member
    held: bool = True


@dataclass(eq=False, slots=True)
class Job:
    id: int
    member: Member
    request: EditRequest | None  # None: the runner reads it back as the job starts
    on_progress: ProgressHook | None
    on_end: EndHook | None
    enqueued_at: float
    # Kept for the runner: EditService keeps where the result goes (a Destination) here.
    to: Any = None
    started_at: float | None = None
    shown: int | None = None  # the last display shown (`queue_status.display`)
    shown_at: float = -math.inf
    slot: Slot | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    updating: asyncio.Task[None] | None = field(default=None, repr=False)

    def updated(self, task: asyncio.Task[None]) -> None:
        """A status update ended: let its task go (2,000 waiting jobs would keep 2,000)."""
        if self.updating is task:
            self.updating = None

    def ended(self, *, result: Any = None, error: BaseException | None = None) -> JobEnd:
        """This job's end, as its member hears of it."""
        waited = None if self.started_at is None else self.started_at - self.enqueued_at
        return JobEnd(self.id, result=result, error=error, waited_s=waited)
