"""Dynamic batching for a server: requests that can share a forward pass wait a few
milliseconds for company, then run together, one batch at a time, off the event loop.

Requests carry a key (for flexo: the expert mask and the sampling settings); a batch holds
requests of one key only, at most `max_batch` of them, taken in arrival order from the oldest
waiting request's key.

How long to wait for company: until as many requests wait as there were clients at the end of
any of the last `REMEMBERED_BATCHES` batches (a batch's requests plus those then waiting; before
any batch, `max_batch`), as long as they keep coming (each within `gap_s` of the one before, or
of the wait's start), and never past `max_wait_s`. Clients that got an answer tend to come back:
with a plain window shorter than their round trips, 16 closed-loop clients split into
alternating batches (9 and 7 on a loaded 2-core machine, whose 16 round trips took 30-60 ms
against a 50 ms window), each costing nearly a full batch's time. Waiting on while they arrive
lets a slow machine gather the whole batch, and stops as soon as arrivals stop. Why several
batches: a crowd's work often ends in a small batch (its stragglers); judged by that one alone,
the crowd coming back after a pause would start with its first few and stay split (on this
machine, 16 clients in blocks of 128 requests ran 9 batches a block instead of 8). A lone client
waits for company only while a crowd is remembered, and never once that has passed. The queue is
bounded: a request that finds it full is refused at once (`QueueFull`), so an overloaded server
answers "later" instead of piling up work. `drain` lets every admitted request finish (a
graceful shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

Job = TypeVar("Job")


class QueueFull(RuntimeError):
    """The server's queue is at its bound; the caller should retry later."""


@dataclass
class Pending(Generic[Job]):
    key: Hashable
    job: Job
    done: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


REMEMBERED_BATCHES = 4  # how many batches' crowds a wait for company remembers

BatchRun = tuple[list[Any], Callable[[], None] | None]


@dataclass(frozen=True)
class Batching:
    """How requests are gathered into batches; these defaults are `flexo serve`'s."""

    max_batch: int = 16  # requests generated together at most
    max_wait_s: float = 0.2  # the most a batch waits for company
    gap_s: float = 0.05  # ... and it starts once none came for this long
    max_queue: int = 64  # requests waiting at most; more are refused (QueueFull)

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.max_queue < 1 or min(self.max_wait_s, self.gap_s) < 0:
            raise ValueError("max_batch and max_queue must be >= 1, max_wait_s and gap_s >= 0")


class Batcher(Generic[Job]):
    """`run_batch(jobs)` runs in one worker thread and returns one result (or exception) per job,
    in order, and optionally a follow-up: work for the same thread once the results are out
    (bookkeeping that must not delay the responses and must finish before the next batch)."""

    def __init__(self, run_batch: Callable[[list[Job]], BatchRun],
                 batching: Batching = Batching(), executor: ThreadPoolExecutor | None = None):
        self.run_batch, self.batching = run_batch, batching
        self._waiting: list[Pending[Job]] = []
        self._wake = asyncio.Event()
        # one thread runs every batch; a caller may share its own single-thread executor (so
        # that other work on the same model runs in the same thread, between batches)
        self._own_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(max_workers=1,
                                                        thread_name_prefix="flexo-batch")
        self._task: asyncio.Task | None = None
        self._closing = False
        # per recent batch: its requests plus those waiting when it ended
        self._clients: deque[int] = deque(maxlen=REMEMBERED_BATCHES)
        self.batches_run = 0
        self.busy_s = 0.0  # time in `run_batch` and follow-ups: the rest the worker stood idle

    @property
    def queued(self) -> int:
        return len(self._waiting)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    def enqueue(self, key: Hashable, job: Job) -> asyncio.Future:
        """Admit `job`: its future gets the result once its batch ran (cancel it to withdraw a
        job still waiting). QueueFull at once when the queue is at its bound or the batcher is
        shutting down."""
        if self._closing:
            raise QueueFull("the server is shutting down")
        if len(self._waiting) >= self.batching.max_queue:
            raise QueueFull(f"{len(self._waiting)} requests are waiting (the bound is "
                            f"{self.batching.max_queue})")
        pending = Pending(key, job)
        self._waiting.append(pending)
        self._wake.set()
        return pending.done

    async def submit(self, key: Hashable, job: Job) -> Any:
        return await self.enqueue(key, job)

    def _take(self) -> list[Pending[Job]]:
        key = self._waiting[0].key
        batch = [p for p in self._waiting if p.key == key][:self.batching.max_batch]
        taken = {id(p) for p in batch}
        self._waiting = [p for p in self._waiting if id(p) not in taken]
        return batch

    async def _loop(self) -> None:
        while True:
            if not self._waiting:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            if self.batching.max_wait_s and len(self._waiting) < self._enough:
                await self._company()
            batch = [p for p in self._take() if not p.done.cancelled()]
            if not batch:
                continue
            followup = None
            try:
                results, followup = await self._in_worker(self.run_batch, [p.job for p in batch])
            except Exception as e:  # noqa: BLE001  (the whole batch failed: each request hears why)
                results = [e] * len(batch)
            self.batches_run += 1
            self._clients.append(len(batch) + len(self._waiting))
            for pending, result in zip(batch, results, strict=True):
                if pending.done.done():
                    continue
                if isinstance(result, BaseException):
                    pending.done.set_exception(result)
                else:
                    pending.done.set_result(result)
            if followup is not None:
                await self._in_worker(followup)

    async def _in_worker(self, work: Callable, *args) -> Any:
        """`work(*args)` in the worker thread, its time counted in `busy_s` (failed or not)."""
        started = time.perf_counter()
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, work, *args)
        finally:
            self.busy_s += time.perf_counter() - started

    @property
    def _enough(self) -> int:
        return min(self.batching.max_batch, max(self._clients, default=self.batching.max_batch))

    async def _company(self) -> None:
        """Wait for `_enough` requests while they keep arriving (none for `gap_s`: go), at most
        `max_wait_s` in all."""
        clock = asyncio.get_running_loop().time
        last = clock()
        deadline, seen = last + self.batching.max_wait_s, len(self._waiting)
        while len(self._waiting) < self._enough and not self._closing:
            if len(self._waiting) > seen:
                seen, last = len(self._waiting), clock()
            left = min(deadline, last + self.batching.gap_s) - clock()
            if left <= 0:
                return
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), left)

    async def drain(self) -> None:
        """Refuse new requests, finish every admitted one, then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._own_executor:
            self._executor.shutdown(wait=True)
