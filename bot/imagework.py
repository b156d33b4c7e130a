"""The bot's image work (checks, conversions, Compare pictures), off the event loop and
bounded: a few threads, a budget of decoded bytes shared by everything in flight, and a
lane of its own for Compare, so that free pictures can never take every thread (or all
the memory) from paid edits."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import functools
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import ParamSpec, TypeVar

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

WORKERS = 2  # this is CPU work: more threads than cores only share the same cores
BUDGET_BYTES = 224 * 1024 * 1024  # one 40 MP RGBA picture decodes to 160 MB
COMPARE_LANE = 1  # Compare pictures made at once (they wait their turn; edits do not)
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
MMAP_THRESHOLD_BYTES = 1024 * 1024


def map_large_blocks() -> None:
    """Have glibc map every block over 1 MB on its own, and unmap it when freed. Left to
    itself it keeps what a thread freed in that thread's arena: each image thread would
    hold on to the largest picture it ever decoded (measured: 441 MB instead of 255 MB
    peak for the worst case the benchmark runs). A no-op without glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    except (OSError, AttributeError):
        log.debug("Not glibc: large blocks are left to the allocator")


class ImageWork:
    """Runs CPU-bound image functions in a small thread pool. Each call says what it will
    hold (`cost`, bytes); calls wait, first come first served, until the budget has room.
    A call larger than the whole budget runs alone."""

    def __init__(
        self,
        *,
        workers: int = WORKERS,
        budget_bytes: int = BUDGET_BYTES,
        compare_lane: int = COMPARE_LANE,
    ) -> None:
        map_large_blocks()
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="image")
        self.budget_bytes = budget_bytes
        self._free = budget_bytes
        self._waiting: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()
        self._compare = asyncio.Semaphore(compare_lane)
        self.peak_held = 0  # the most ever held at once, for the benchmark

    @property
    def held(self) -> int:
        return self.budget_bytes - self._free

    async def run(
        self, fn: Callable[P, T], /, *args: P.args, cost: int = 0, **kwargs: P.kwargs
    ) -> T:
        """`fn(*args, **kwargs)` in the pool, once `cost` bytes of the budget are free."""
        granted = await self._acquire(min(max(0, cost), self.budget_bytes))
        loop = asyncio.get_running_loop()
        try:
            job: Future[T] = self._executor.submit(functools.partial(fn, *args, **kwargs))
        except BaseException:
            self._release(granted)
            raise

        def done(_: Future[T]) -> None:
            # The thread may outlive a cancelled caller: the budget is given back only
            # when the work has really ended.
            with contextlib.suppress(RuntimeError):  # the loop has closed
                loop.call_soon_threadsafe(self._release, granted)

        job.add_done_callback(done)
        return await asyncio.wrap_future(job)

    @contextlib.asynccontextmanager
    async def compare_lane(self) -> AsyncIterator[None]:
        """Hold Compare's lane (downloads included: they are memory too)."""
        async with self._compare:
            yield

    async def _acquire(self, amount: int) -> int:
        if not self._waiting and self._free >= amount:
            self._take(amount)
            return amount
        waiter = asyncio.get_running_loop().create_future()
        entry = (amount, waiter)
        self._waiting.append(entry)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release(amount)  # granted just as the caller gave up
            else:
                self._waiting.remove(entry)
                self._wake()
            raise
        return amount

    def _take(self, amount: int) -> None:
        self._free -= amount
        self.peak_held = max(self.peak_held, self.held)

    def _release(self, amount: int) -> None:
        self._free += amount
        self._wake()

    def _wake(self) -> None:
        while self._waiting and self._waiting[0][0] <= self._free:
            amount, waiter = self._waiting.popleft()
            self._take(amount)
            waiter.set_result(None)

    def close(self) -> None:
        """Stop taking work; running calls finish in their threads."""
        self._executor.shutdown(wait=False, cancel_futures=True)
