"""The queue in front of one model's engine in one worker: requests wait here while the engine is busy, and the
moment it is free everything waiting goes as one engine call.

A batch never waits for more requests while the engine is idle: on a CPU, batching pays with what queues while the
engine is busy, and a hold-back delays every request in it (BentoML's CorkDispatcher held even full batches and
polled in 1 ms ticks, profiling.md). The controller sleeps on a condition each arriving request notifies, and looks
again the moment its batch is done; requests that arrive in one event-loop turn queue before it runs, so a burst on
an idle engine is one batch.
"""

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import numpy as np

from service.errors import Overloaded


@dataclass(eq=False)
class Job:
    rows: np.ndarray  # (N, F) or (N, L)
    future: asyncio.Future
    arrived: float  # time.perf_counter() when queued (the queue-wait metric)
    begun: float  # when uvicorn began the request, at or before `arrived` (shedding: its wait for the loop counts)


class Dispatcher:
    def __init__(self, run_batch: Callable[[np.ndarray], Awaitable[np.ndarray]],
                 merge: Callable[[Sequence[np.ndarray]], np.ndarray], max_rows: int,
                 predict: Callable[[tuple[int, ...]], float], max_latency_s: float,
                 waited: Callable[[float], None]) -> None:
        self._run_batch = run_batch  # one engine call: (rows, ...) in, (rows, K) out
        self._merge = merge  # requests' rows -> one batch (token rows padded to the longest)
        self._max_rows = max_rows
        self._predict = predict  # (rows, width) -> predicted seconds of that engine call
        self._max_latency_s = max_latency_s
        self._waited = waited  # told each request's wait in the queue
        self._queue: deque[Job] = deque()
        self._wake: asyncio.Condition | None = None  # made on first use, on the serving loop
        self._controller: asyncio.Task | None = None

    def __len__(self) -> int:
        return len(self._queue)

    def close(self) -> None:
        """Stop the controller (the queue is empty: the batcher waits for its requests first)."""
        if self._controller is not None:
            self._controller.cancel()

    async def submit(self, rows: np.ndarray, waited_s: float = 0.0) -> np.ndarray:
        """Queue one request's rows (fewer than max_rows); its own outputs once its batch has run. `waited_s`: how
        long it waited for the event loop before the service read it."""
        if self._controller is None:
            self._wake = asyncio.Condition()
            self._controller = asyncio.get_running_loop().create_task(self._control())
        now = time.perf_counter()
        job = Job(rows, asyncio.get_running_loop().create_future(), now, now - waited_s)
        self._queue.append(job)
        async with self._wake:
            self._wake.notify()
        return await job.future

    def queued_seconds(self) -> float:
        """Predicted engine time of what waits here, in batches of up to max_rows."""
        seconds, rows, width = 0.0, 0, 1
        for job in self._queue:
            rows, width = rows + job.rows.shape[0], max(width, job.rows.shape[1])
            if rows >= self._max_rows:
                seconds, rows = seconds + self._predict((self._max_rows, width)), rows - self._max_rows
        return seconds + (self._predict((rows, width)) if rows else 0.0)

    def _shed(self) -> None:
        """While the first request's wait (since uvicorn began it) and the queue's predicted cost reach max_latency,
        the first is refused: it would be answered too late anyway, and the requests behind it get their chance."""
        now = time.perf_counter()
        while len(self._queue) > 1 and now - self._queue[0].begun + self.queued_seconds() >= self._max_latency_s:
            job = self._queue.popleft()
            if not job.future.done():
                job.future.set_exception(Overloaded(
                    "the server is overloaded: this request would miss the latency budget; retry later"))

    def _take(self) -> list[Job]:
        """The waiting requests, oldest first, up to max_rows (at least one); those whose callers left are dropped."""
        jobs, rows, now = [], 0, time.perf_counter()
        while self._queue and (not jobs or rows + self._queue[0].rows.shape[0] <= self._max_rows):
            job = self._queue.popleft()
            if job.future.done():  # (cancelled: its client's deadline passed or it left)
                continue
            jobs.append(job)
            rows += job.rows.shape[0]
            self._waited(now - job.arrived)
        return jobs

    async def _control(self) -> None:
        while True:
            async with self._wake:
                await self._wake.wait_for(lambda: bool(self._queue))
            self._shed()
            jobs = self._take()
            if not jobs:
                continue
            try:
                # One batch at a time, run by the controller itself: requests that arrive meanwhile form the next.
                outputs = await self._run_batch(self._merge([job.rows for job in jobs]))
            except Exception as error:  # each request answers with the engine's error
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(error)
                continue
            row = 0
            for job in jobs:
                if not job.future.done():
                    job.future.set_result(outputs[row:row + job.rows.shape[0]])
                row += job.rows.shape[0]
