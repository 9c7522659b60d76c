"""Adaptive batching per model with BentoML's batcher, shared by the v1 and v2 protocols.

`@bentoml.api(batchable=True)` wraps BentoML's CorkDispatcher around one API function. Our routes
carry the model name in the path and two protocols must share one queue per model, so each model
gets that same dispatcher directly: it merges concurrent requests into one engine call, splits a
request above max_batch_size across calls, learns the engine's latency, and sheds load (503) when
it predicts max_latency_ms cannot be met. Four changes to how it runs (each explained where it is made):
it never holds a batch back while the engine is idle and is woken by events rather than a 1 ms poll; a
request that finds the engine idle and nobody waiting runs its own batch rather than going through the
controller; a request that is the only one in its worker skips the dispatcher altogether; and engine calls
cheaper than a thread hop run on the event loop.
"""

import asyncio
import logging
import time
from typing import Sequence

import anyio
import numpy as np
from bentoml._internal.marshal.dispatcher import CorkDispatcher, Job, Optimizer

from service import metrics
from service.batch_limit import BatchLimits
from service.engine_cost import EngineCost
from service.errors import DeadlineUnmet, Overloaded, QueueFull
from service.in_flight import REQUESTS
from service.training_range import TokenTrainingRange, TrainingRange

log = logging.getLogger("modelserve")


class _NoHoldOptimizer(Optimizer):
    """BentoML's latency model for load shedding, without its learned hold-back.

    CorkDispatcher holds a batch back while `jobs x (newest wait + tick + per-job cost)` is below the
    average wait it has seen. That counts jobs, not rows, so a 64-row request (already a full batch)
    is held too, and every wait it causes raises the average that decides the next hold: measured at
    64 rows per request, c=8, batching served the regression model at 41,600 rows/s against 212,000
    with batching off. With the hold at zero a batch goes as soon as the engine is free, and batches
    still form from what queues while it is busy, which is where batching pays on a CPU.
    """

    def trigger_refresh(self) -> None:
        super().trigger_refresh()
        self.wait = 0.0


class _Dispatcher(CorkDispatcher):
    """CorkDispatcher driven by events: it dispatches the moment the engine is free and a request waits.

    BentoML's controller polls in 1 ms ticks while the engine is busy, so every batch after the first
    started up to 1 ms late: on a 2-core machine the transformer's batches at c=64 take 2-3 ms, and the
    ticks left the engine idle for a fifth of the time. Here the controller waits on the queue's
    condition, which each arriving request notifies, and looks again the moment its batch is done.
    The queue, the batch assembly (splitting a request across batches) and the latency model are
    BentoML's; so is the shedding rule, applied whenever the controller looks: while the first
    request's wait plus the predicted cost of the queue reaches max_latency, the first request is
    answered 503. It also records each request's wait in the queue. A request that finds the engine idle
    and nobody waiting runs its own batch (`submit`); the controller never starts a batch while one runs.
    """

    def __init__(self, batcher: "ModelBatcher", **kwargs) -> None:
        super().__init__(**kwargs)
        self.optimizer = _NoHoldOptimizer(self.max_latency)
        self._batcher = batcher
        self._lone_yielding = False  # a request that found the engine idle is yielding once (see submit)

    async def controller(self) -> None:
        while True:
            try:
                async with self._wake_event:
                    await self._wake_event.wait_for(self._can_dispatch)
                self._sema.acquire()  # (outbound_call releases it)
                # One batch at a time, so the controller runs it itself rather than in a task of its own
                # (a task and a wake-up fewer per batch). Requests that arrive meanwhile form the next batch.
                await self.outbound_call(tuple(self._get_inputs()))
            except Exception:
                log.exception("batch dispatch failed")

    def _can_dispatch(self) -> bool:
        """Shed what cannot make max_latency any more (BentoML's rule), then: is anything waiting for an idle
        engine?"""
        now, queue = time.time(), self._queue
        cost_per_job, fixed_cost = self.optimizer.o_a, self.optimizer.o_b
        while len(queue) > 1 and (now - queue[0].enqueue_time + cost_per_job * len(queue) + fixed_cost
                                  >= self.max_latency):
            queue.popleft().future.cancel()  # the handler answers 503 (fallback)
        return bool(queue) and not self._sema.is_locked()  # (a lone request may be running)

    def _get_inputs(self, num_batches: int | None = None):
        """BentoML's batch assembly, up to the batch limit (batch_limit.py). For token models that is the
        smallest limit among the requests the batch will take: a long request lowers it for the whole batch,
        which is padded to its length."""
        if num_batches is None:
            limits = self._batcher.limits
            num_batches = limits.fixed_rows
            if num_batches is None:
                num_batches, rows = self.max_batch_size, 0
                for job in self._queue:
                    num_batches = min(num_batches, limits.rows_for(job.data))
                    rows += job.data.shape[0]
                    if rows >= num_batches:
                        break
        return super()._get_inputs(num_batches)

    async def outbound_call(self, inputs_info, training: bool = False):
        if self._batcher.recording:
            now = time.time()
            for job in inputs_info:
                self._batcher.queue_wait.observe(now - job.enqueue_time)
        return await super().outbound_call(inputs_info, training)

    async def submit(self, data: np.ndarray) -> np.ndarray:
        """One request's rows in, its outputs out: through the queue, or run at once when it is alone.

        Going through the controller costs a lone request two task switches: waking the controller, and
        the controller waking it. But the engine being idle with nothing queued does not make a request
        alone: others that reached the server in the same event-loop turn have not reached this code yet.
        So it yields once (while it does, the others queue and wake the controller): if nothing queued
        meanwhile it runs alone, else it goes first in the queue and the controller takes them all in one
        batch. Measured at c=1 side by side with the controller-only path: 5-10 % more requests served and
        20-50 us less server CPU per request. (A request that uvicorn counts as the only one in its worker
        does not come here at all: see ModelBatcher.infer.)
        """
        first_call = self._controller is None
        if first_call:  # (the new controller runs before this request could resume from its yield)
            self._controller = self._loop.create_task(self.controller())
        if first_call or self._queue or self._sema.is_locked() or self._lone_yielding:
            return await self._through_queue(Job(time.time(), data, self._loop.create_future()))
        arrived = time.time()
        self._lone_yielding = True
        try:
            await asyncio.sleep(0)
        finally:
            self._lone_yielding = False
        if self._queue or self._sema.is_locked():
            return await self._through_queue(Job(arrived, data, self._loop.create_future()), first=True)
        return await self._run_alone(data, arrived)

    async def _through_queue(self, job: Job, first: bool = False) -> np.ndarray:
        if first:
            self._queue.appendleft(job)  # it arrived before the requests queued while it yielded
        else:
            self._queue.append(job)
        async with self._wake_event:
            self._wake_event.notify_all()
        try:
            result = await job.future
        except asyncio.CancelledError:  # shed by the controller
            return self.fallback()
        if isinstance(result, Exception):  # outbound_call hands the engine's exception to each request
            raise result
        return result

    async def _run_alone(self, data: np.ndarray, arrived: float) -> np.ndarray:
        self._sema.acquire()
        started = time.time()
        try:
            if self._batcher.recording:
                self._batcher.queue_wait.observe(started - arrived)
            (output,) = await self.callback((data,))
            self.optimizer.log_outbound(n=1, wait=started - arrived, duration=time.time() - started)
            return output
        finally:
            self._sema.release()
            if self._queue:  # what queued while this ran (in a worker thread) is the controller's to run
                async with self._wake_event:
                    self._wake_event.notify_all()

    def calibrate(self) -> None:
        """Refit the latency model from the engine calls so far (warm-up calls this before traffic)."""
        self.optimizer.trigger_refresh()


INLINE_BELOW_S = 500e-6
"""Engine calls predicted to take less than this run on the event loop. Handing a call to a worker thread
and back costs 80-140 us (measured: an empty call through anyio's thread pool), as much as the default
transformer's engine call at batch 1. With this (and the event-driven controller) the default transformer
served 1.3x the requests at c=1, side by side with the code before. The threshold was 300 us until
TorchScript's batch-1 call (300-380 us) was found paying the hop on every request (perf: 12 % of the
worker's samples in the kernel, mostly task switches); at 500 us it served 1.18x (c=1) and 1.15x (c=8) the
rows, side by side, with ONNX unchanged within noise (c=1 0.93x, where both run the same path; c=8 1.10x)."""


def _overloaded():
    raise Overloaded("the server is overloaded: this request would miss the latency budget; retry later")


class ModelBatcher:
    def __init__(self, model: str, engine, backend: str, pad_id: int | None, max_batch_size: int,
                 max_latency_ms: int, batching: bool = True,
                 training_range: TrainingRange | TokenTrainingRange | None = None, max_queue: int = 2048) -> None:
        self.engine = engine
        self.max_queue = max_queue
        self._pending = 0  # requests waiting for or in the engine (infer)
        self.batching = batching
        self.pad_id = pad_id  # None for feature models; token batches of different lengths get padded
        self.max_batch_size = max_batch_size
        self.limits = BatchLimits.fixed(max_batch_size)
        """Most rows merged into one engine call: max_batch_size until warm-up sets them (limit_batches)."""
        self._model = model
        self._backend = backend
        self._inference: dict[str, object] = {}  # device -> its engine-call histogram (see _observe_call)
        self._rows = metrics.ROWS_PER_ENGINE_CALL.labels(model=model)
        self._training_range = training_range
        """Counts the instances of each engine call outside the training range (training_range.py): once per
        merged batch rather than per request, and against the same rows as modelserve_rows_per_engine_call."""
        self.queue_wait = metrics.QUEUE_WAIT_SECONDS.labels(model=model)
        self._limiter = anyio.CapacityLimiter(1)  # one engine call at a time per model and worker
        self.max_latency_s = max_latency_ms / 1000
        self.cost = EngineCost()
        """Predicted seconds of an engine call, from the calls so far: to run cheap calls inline and to shed
        requests that skip the queue."""
        self._seconds_waiting = 0.0  # predicted engine time of such requests waiting for or in the engine
        self.recording = False
        """Metrics stay off during warm-up, so they describe served traffic only."""
        self._dispatcher = _Dispatcher(self, max_latency_in_ms=max_latency_ms, max_batch_size=max_batch_size,
                                       fallback=_overloaded, get_batch_size=lambda batch: batch.shape[0],
                                       batch_dim=(0, 0))
        self._dispatcher.callback = self._run_batch

    def _merge(self, batches: Sequence[np.ndarray]) -> np.ndarray:
        if self.pad_id is None:
            return np.concatenate(batches)  # (sum N, F)
        width = max(b.shape[1] for b in batches)
        merged = np.full((sum(b.shape[0] for b in batches), width), self.pad_id, dtype=np.int64)  # (sum N, L)
        row = 0
        for b in batches:
            merged[row:row + b.shape[0], : b.shape[1]] = b
            row += b.shape[0]
        return merged

    async def _engine(self, batch: np.ndarray) -> np.ndarray:
        """Run one engine call: on the event loop when the engine is idle and a CPU call is predicted to take
        less than a thread hop would cost, in a worker thread otherwise. A CUDA call always leaves the loop:
        its CPU waits on the GPU, and a loop blocked meanwhile cannot parse the requests that arrive. Measured
        on an H200 (paired-gpu-inline.md): a lone request's CUDA call on the loop served the default
        transformer at c=8 0.79x of the threaded call."""
        device = self.engine.device_for(batch)
        if self._limiter.borrowed_tokens == 0 and device == "cpu" and self.cost.seconds(device, batch) < INLINE_BELOW_S:
            return self._call_engine(batch, device)
        # ONNX Runtime and torch release the GIL, so the event loop keeps accepting and parsing requests
        # while the engine runs.
        return await anyio.to_thread.run_sync(self._call_engine, batch, device, limiter=self._limiter)

    def _call_engine(self, batch: np.ndarray, device: str) -> np.ndarray:
        """One engine call on `batch`, which runs on `device` (engine.device_for), timed and recorded."""
        started = time.perf_counter()
        out = self.engine.run(batch)
        seconds = time.perf_counter() - started
        self.cost.observe(device, batch, seconds)
        if self.recording:
            self._observe_call(batch, device, seconds)
        return out

    def _observe_call(self, batch: np.ndarray, device: str, seconds: float) -> None:
        histogram = self._inference.get(device)
        if histogram is None:  # (created on first use: a CPU-only server shows no CUDA series)
            histogram = self._inference[device] = metrics.INFERENCE_SECONDS.labels(
                model=self._model, backend=self._backend, device=device)
        histogram.observe(seconds)
        self._rows.observe(batch.shape[0])
        if self._training_range is not None:
            self._training_range.observe(batch)

    async def _run_batch(self, batches: Sequence[np.ndarray]) -> list[np.ndarray]:
        if len(batches) == 1:  # (a lone request: nothing to merge or split)
            return [await self._engine(batches[0])]
        out = await self._engine(self._merge(batches))
        results, row = [], 0
        for b in batches:
            results.append(out[row:row + b.shape[0]])
            row += b.shape[0]
        return results

    async def infer(self, batch: np.ndarray, deadline_s: float | None = None) -> np.ndarray:
        """Queue one request's rows; returns its own outputs once its engine call is done. Refused at once (429)
        while max_queue requests already wait: past that a request would only wait out its client's patience.
        With a client deadline (seconds from now), refused at once (504) when the work ahead of it and its own are
        predicted to take longer, and answered 504 if the deadline passes while it waits."""
        if self._pending >= self.max_queue and self.recording:  # (warm-up's bursts are its own)
            raise QueueFull(f"{self._pending} requests for model {self._model!r} are already waiting in this worker "
                            f"(MODELSERVE_MAX_QUEUE={self.max_queue}); retry later")
        predicted = None if deadline_s is None else self.predicted_seconds(batch)
        if predicted is not None and predicted > deadline_s:
            raise DeadlineUnmet(f"the request's timeout of {deadline_s * 1e3:g} ms cannot be met: the work queued "
                                f"ahead of it and its own are predicted to take {predicted * 1e3:.3g} ms")
        self._pending += 1
        try:
            if deadline_s is None:
                return await self._infer(batch)
            return await asyncio.wait_for(self._infer(batch), deadline_s)
        except TimeoutError:
            raise DeadlineUnmet(f"the request's timeout of {deadline_s * 1e3:g} ms passed before it was answered") \
                from None
        finally:
            self._pending -= 1

    def predicted_seconds(self, batch: np.ndarray) -> float:
        """Predicted time until this batch is answered: the engine calls queued or running ahead of it (the
        dispatcher's latency model for queued requests, the cost model for the rest) and its own call."""
        ahead = self._seconds_waiting
        queued = len(self._dispatcher._queue)
        if queued:
            ahead += queued * self._dispatcher.optimizer.o_a + self._dispatcher.optimizer.o_b
        return ahead + self.cost.seconds(self.engine.device_for(batch), batch)

    async def _infer(self, batch: np.ndarray) -> np.ndarray:
        limit = self.limits.rows_for(batch)
        if self.batching and batch.shape[0] < limit:
            if not REQUESTS.alone():
                return await self._dispatcher.submit(batch)
            # The only request uvicorn has begun in this worker (in_flight.py): nothing can join it, so it
            # goes the way it would with batching off. At c=1 (15 rounds side by side with a twin) that served
            # 0.99x, 0.97x and 1.02x of batching off (regression, MLP, transformer; the twin 1.00x, 0.97x, 0.99x)
            # where the dispatcher's lone path had served 0.92-0.96x. It waited for nobody, and the queue-wait
            # histogram counts it so.
            if self.recording:
                self.queue_wait.observe(0.0)
        # Batching off, a request alone, or one that fills whole batches by itself (merging would gain nothing
        # but copies): this request alone, in chunks of at most `limit` rows. Shed like the dispatcher
        # does when the engine calls ahead of it and its own, at their predicted cost, would miss max_latency_ms.
        chunks = [batch[i:i + limit] for i in range(0, batch.shape[0], limit)]
        seconds = sum(self.cost.seconds(self.engine.device_for(chunk), chunk) for chunk in chunks)
        if self._seconds_waiting + seconds > self.max_latency_s:
            _overloaded()
        self._seconds_waiting += seconds
        try:
            outputs = [await self._engine(chunk) for chunk in chunks]
        finally:
            self._seconds_waiting -= seconds
        return outputs[0] if len(outputs) == 1 else np.concatenate(outputs)

    def limit_batches(self, limits: BatchLimits) -> None:
        """Merge at most these many rows (never above max_batch_size) into one engine call (batch_limit.py)."""
        self.limits = BatchLimits({length: max(1, min(rows, self.max_batch_size))
                                   for length, rows in sorted(limits.by_length.items())})
        for length, rows in self.limits.by_length.items():
            metrics.BATCH_LIMIT_ROWS.labels(model=self._model, length=str(length) if length else "any").set(rows)

    def calibrate(self) -> None:
        """Fit the shedding latency model to the engine calls made so far (warm-up, before traffic)."""
        self._dispatcher.calibrate()

    def infer_direct(self, batch: np.ndarray) -> np.ndarray:
        """Call the engine without queueing (warm-up)."""
        return self._call_engine(batch, self.engine.device_for(batch))
