"""Dynamic batching: concurrent requests' items packed into token-budgeted model calls on a worker thread."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from patentrank.errors import PatentrankError
from patentrank.metrics import Metrics

logger = logging.getLogger("patentrank.batching")

RunBatch = Callable[[Hashable, list[Any]], Sequence[Any]]


class Overloaded(PatentrankError):
    """The server cannot take this request now: `status` 429 (queue full) or 503 (deadline passed)."""

    def __init__(self, message: str, *, status: int, retry_after_s: int, reason: str) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s
        self.reason = reason


@dataclass(eq=False)
class _Job:
    """One request's items; `scheduled` of them have gone to the model, `finished` have come back."""

    key: Hashable
    items: Sequence[Any]
    costs: Sequence[int]
    future: asyncio.Future[list[Any]]
    created: float
    results: list[Any] = field(default_factory=list)
    scheduled: int = 0
    finished: int = 0
    first_scheduled: float | None = None

    @property
    def dead(self) -> bool:
        """Answered, failed, timed out or abandoned by its client: nothing more to compute."""
        return self.future.done()


class DynamicBatcher:
    """Gathers items (prompts, texts) from concurrent requests into model calls run on one worker thread.

    The first waiting item opens a window of at most `max_wait_s`; the call starts when the window
    closes or the budget is full (`max_batch_size` items, or `count x longest cost` reaching
    `batch_tokens`). While the model is busy, new requests pile up and go together into the next
    call, so under load there is no added wait at all; and while requests come one at a time (the
    last call served one request and none arrived during it) there is no window either. Only items
    with the same key share a call (e.g. embedding queries with one instruction). With
    `enabled=False` every request is run alone, one after another: the baseline for benchmarks.

    At most `max_queue` requests wait or run at a time; one more gets `Overloaded` (429) at once,
    and a request not answered within `timeout_s` gets `Overloaded` (503) and its unscheduled items
    are dropped. Both carry a Retry-After estimate from the measured time per item.

    Example:
        >>> batcher = DynamicBatcher("rerank", lambda key, items: [len(i) for i in items])
        >>> await batcher.start()                                          # doctest: +SKIP
        >>> await batcher.submit([[1, 2], [3]], costs=[2, 1])              # doctest: +SKIP
        [2, 1]
    """

    def __init__(
        self,
        name: str,
        run_batch: RunBatch,
        *,
        batch_tokens: int = 16384,
        max_batch_size: int = 64,
        max_wait_s: float = 0.005,
        max_queue: int = 256,
        timeout_s: float = 120.0,
        enabled: bool = True,
        metrics: Metrics | None = None,
    ) -> None:
        self.name = name
        self.run_batch = run_batch
        self.batch_tokens = batch_tokens
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.timeout_s = timeout_s
        self.enabled = enabled
        self.metrics = metrics
        self._pending: deque[_Job] = deque()
        self._active = 0
        self._seconds_per_item = 0.01
        # Whether recent calls saw concurrent requests; a lone client is then not held for the window.
        self._concurrent = False
        self._arrivals = 0
        self._arrived: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None

    @property
    def depth(self) -> int:
        """Requests waiting for or inside a model call."""
        return self._active

    async def start(self) -> None:
        """Start the gathering task on the running event loop and the model thread."""
        if self._task is not None:
            return
        self._arrived = asyncio.Event()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"patentrank-{self.name}")
        self._task = asyncio.create_task(self._loop(), name=f"patentrank-{self.name}-batcher")

    async def stop(self) -> None:
        """Stop gathering; requests still waiting get a 503."""
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        for job in self._pending:
            if not job.dead:
                job.future.set_exception(
                    Overloaded("the server is shutting down", status=503, retry_after_s=5, reason="shutdown")
                )
        self._pending.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def retry_after(self) -> int:
        """Seconds until the current backlog is likely drained (1 to 60)."""
        backlog = sum(len(j.items) - j.scheduled for j in self._pending if not j.dead)
        return max(1, min(60, math.ceil(backlog * self._seconds_per_item)))

    async def submit(self, items: Sequence[Any], costs: Sequence[int], key: Hashable = None) -> list[Any]:
        """Results for `items`, in order, computed in shared batches; raises `Overloaded` when busy."""
        if not items:
            return []
        if self._task is None or self._arrived is None:
            raise RuntimeError(f"the {self.name} batcher is not started (call Engine.start())")
        if self._active >= self.max_queue:
            self._count_rejection("queue_full")
            raise Overloaded(
                f"the {self.name} queue is full ({self.max_queue} requests waiting); retry later",
                status=429,
                retry_after_s=self.retry_after(),
                reason="queue_full",
            )
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        job = _Job(key, items, costs, future, time.monotonic(), [None] * len(items))
        self._pending.append(job)
        self._arrivals += 1
        self._set_active(self._active + 1)
        self._arrived.set()
        try:
            return await asyncio.wait_for(future, self.timeout_s)
        except TimeoutError:
            self._count_rejection("deadline")
            raise Overloaded(
                f"the {self.name} request was not answered within {self.timeout_s:g} s "
                "(PATENTRANK_REQUEST_TIMEOUT_S); the server is overloaded, retry later",
                status=503,
                retry_after_s=self.retry_after(),
                reason="deadline",
            ) from None
        finally:
            self._set_active(self._active - 1)

    def _set_active(self, value: int) -> None:
        self._active = value
        if self.metrics is not None:
            self.metrics.queue_depth.labels(model=self.name).set(value)

    def _count_rejection(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.rejected.labels(model=self.name, reason=reason).inc()

    def _live(self) -> list[_Job]:
        return [job for job in self._pending if not job.dead and job.scheduled < len(job.items)]

    def _budget_full(self, jobs: list[_Job]) -> bool:
        count, longest = 0, 0
        key = jobs[0].key
        for job in jobs:
            if job.key != key:
                continue
            count += len(job.items) - job.scheduled
            longest = max(longest, max(job.costs[job.scheduled :]))
            if count >= self.max_batch_size or count * longest >= self.batch_tokens:
                return True
        return False

    async def _gather(self, oldest: float) -> None:
        """Wait for more requests until the window that opened at `oldest` closes or the budget fills."""
        assert self._arrived is not None
        while True:
            jobs = self._live()
            remaining = oldest + self.max_wait_s - time.monotonic()
            if remaining <= 0 or not jobs or self._budget_full(jobs):
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                return

    def _take(self) -> tuple[Hashable, list[tuple[_Job, int, int]]]:
        """The next call's items: FIFO over requests with the first request's key, within the budget."""
        jobs = self._live()
        key = jobs[0].key
        parts: list[tuple[_Job, int, int]] = []
        count, longest = 0, 0
        for job in jobs:
            if job.key != key:
                continue
            start = job.scheduled
            if not self.enabled:  # one request per call; the model splits it into its own batches
                job.scheduled = len(job.items)
                parts.append((job, start, job.scheduled))
                break
            while job.scheduled < len(job.items):
                cost = job.costs[job.scheduled]
                grown = max(longest, cost)
                if count and (count >= self.max_batch_size or (count + 1) * grown > self.batch_tokens):
                    break
                count, longest = count + 1, grown
                job.scheduled += 1
            if job.scheduled > start:
                parts.append((job, start, job.scheduled))
            if job.scheduled < len(job.items):
                break
        self._pending = deque(j for j in self._pending if not j.dead and j.scheduled < len(j.items))
        return key, parts

    async def _loop(self) -> None:
        assert self._arrived is not None
        loop = asyncio.get_running_loop()
        while True:
            jobs = self._live()
            if not jobs:
                self._pending.clear()
                self._arrived.clear()
                await self._arrived.wait()
                continue
            if self.enabled and self.max_wait_s > 0 and (self._concurrent or len(jobs) > 1):
                await self._gather(jobs[0].created)
                if not self._live():
                    continue
            key, parts = self._take()
            now = time.monotonic()
            for job, start, _ in parts:
                if start == 0 and self.metrics is not None:
                    self.metrics.stage_seconds.labels(stage=f"{self.name}_queue").observe(now - job.created)
            items = [item for job, start, end in parts for item in job.items[start:end]]
            began = time.perf_counter()
            arrivals = self._arrivals
            try:
                results = await loop.run_in_executor(self._executor, self.run_batch, key, items)
            except Exception as exc:  # a model failure fails the requests in this call, not the server
                if isinstance(
                    exc, PatentrankError
                ):  # explained by its message (e.g. a remote server's answer)
                    logger.warning("%s model call failed: %s", self.name, exc)
                else:
                    logger.exception("%s model call failed", self.name)
                for job, _, _ in parts:
                    if not job.dead:
                        job.future.set_exception(exc)
                continue
            self._record(began, parts, len(items))
            self._concurrent = len(parts) > 1 or self._arrivals > arrivals
            offset = 0
            for job, start, end in parts:
                job.results[start:end] = results[offset : offset + end - start]
                offset += end - start
                job.finished += end - start
                if job.finished == len(job.items) and not job.dead:
                    job.future.set_result(job.results)

    def _record(self, began: float, parts: list[tuple[_Job, int, int]], n_items: int) -> None:
        elapsed = time.perf_counter() - began
        self._seconds_per_item = 0.8 * self._seconds_per_item + 0.2 * (elapsed / max(1, n_items))
        if self.metrics is not None:
            self.metrics.stage_seconds.labels(stage=f"{self.name}_model").observe(elapsed)
            self.metrics.batch_items.labels(model=self.name).observe(n_items)
            self.metrics.batch_requests.labels(model=self.name).observe(len(parts))
