"""Adaptive batching per model with BentoML's batcher, shared by the v1 and v2 protocols.

`@bentoml.api(batchable=True)` wraps BentoML's CorkDispatcher around one API function. Our routes
carry the model name in the path and two protocols must share one queue per model, so each model
gets that same dispatcher directly: it merges concurrent requests into one engine call, splits a
request above max_batch_size across calls, learns the engine's latency, and sheds load (503) when
it predicts max_latency_ms cannot be met. It never holds a batch back while the engine is idle.
"""

import time
from typing import Sequence

import anyio
import numpy as np
from bentoml._internal.marshal.dispatcher import CorkDispatcher, Optimizer

from service import metrics
from service.errors import Overloaded


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


class _TimedDispatcher(CorkDispatcher):
    """CorkDispatcher that records each request's wait in the queue (it keeps the enqueue time)."""

    def __init__(self, model: str, batcher: "ModelBatcher", **kwargs) -> None:
        super().__init__(**kwargs)
        self._queue_wait = metrics.QUEUE_WAIT_SECONDS.labels(model=model)
        self.optimizer = _NoHoldOptimizer(self.max_latency)
        self._batcher = batcher

    async def outbound_call(self, inputs_info, training: bool = False):
        if self._batcher.recording:
            now = time.time()
            for job in inputs_info:
                self._queue_wait.observe(now - job.enqueue_time)
        return await super().outbound_call(inputs_info, training)


def _overloaded():
    raise Overloaded("the server is overloaded: this request would miss the latency budget; retry later")


class ModelBatcher:
    def __init__(self, model: str, engine, backend: str, pad_id: int | None, max_batch_size: int,
                 max_latency_ms: int, batching: bool = True) -> None:
        self.engine = engine
        self.batching = batching
        self.pad_id = pad_id  # None for feature models; token batches of different lengths get padded
        self.max_batch_size = max_batch_size
        self._inference = metrics.INFERENCE_SECONDS.labels(model=model, backend=backend)
        self._rows = metrics.ROWS_PER_ENGINE_CALL.labels(model=model)
        self._limiter = anyio.CapacityLimiter(1)  # one engine call at a time per model and worker
        self.max_latency_s = max_latency_ms / 1000
        self._seconds_per_row = 0.0  # moving average over engine calls, to shed requests that skip the queue
        self._rows_waiting = 0  # rows of such requests waiting for or in the engine
        self.recording = False
        """Metrics stay off during warm-up, so they describe served traffic only."""
        dispatcher = _TimedDispatcher(model, self, max_latency_in_ms=max_latency_ms, max_batch_size=max_batch_size,
                                      fallback=_overloaded, get_batch_size=lambda batch: batch.shape[0],
                                      batch_dim=(0, 0))
        self._submit = dispatcher(self._run_batch)

    def _merge(self, batches: Sequence[np.ndarray]) -> np.ndarray:
        if len(batches) == 1:
            return batches[0]
        if self.pad_id is None:
            return np.concatenate(batches)  # (sum N, F)
        width = max(b.shape[1] for b in batches)
        merged = np.full((sum(b.shape[0] for b in batches), width), self.pad_id, dtype=np.int64)  # (sum N, L)
        row = 0
        for b in batches:
            merged[row:row + b.shape[0], : b.shape[1]] = b
            row += b.shape[0]
        return merged

    def _call_engine(self, batch: np.ndarray) -> np.ndarray:
        started = time.perf_counter()
        out = self.engine.run(batch)
        seconds = time.perf_counter() - started
        per_row = seconds / batch.shape[0]
        self._seconds_per_row = per_row if not self._seconds_per_row else 0.9 * self._seconds_per_row + 0.1 * per_row
        if self.recording:
            self._inference.observe(seconds)
            self._rows.observe(batch.shape[0])
        return out

    async def _run_batch(self, batches: Sequence[np.ndarray]) -> list[np.ndarray]:
        merged = self._merge(batches)
        # In a worker thread: ONNX Runtime and torch release the GIL, so the event loop keeps
        # accepting and parsing requests while the engine runs.
        out = await anyio.to_thread.run_sync(self._call_engine, merged, limiter=self._limiter)
        results, row = [], 0
        for b in batches:
            results.append(out[row:row + b.shape[0]])
            row += b.shape[0]
        return results

    async def infer(self, batch: np.ndarray) -> np.ndarray:
        """Queue one request's rows; returns its own outputs once its engine call is done."""
        if self.batching and batch.shape[0] < self.max_batch_size:
            return await self._submit(batch)
        # Batching off, or a request that fills whole batches by itself (merging would gain nothing, and
        # the dispatcher polls the busy engine in 1 ms ticks, which halved bulk throughput for the small
        # models): this request alone, in chunks of at most max_batch_size rows. Shed like the dispatcher
        # does when the rows ahead of it, at the engine's recent cost per row, would miss max_latency_ms.
        rows = batch.shape[0]
        if (self._rows_waiting + rows) * self._seconds_per_row > self.max_latency_s:
            _overloaded()
        self._rows_waiting += rows
        try:
            chunks = [batch[i:i + self.max_batch_size] for i in range(0, rows, self.max_batch_size)]
            outputs = [await anyio.to_thread.run_sync(self._call_engine, chunk, limiter=self._limiter)
                       for chunk in chunks]
        finally:
            self._rows_waiting -= rows
        return outputs[0] if len(outputs) == 1 else np.concatenate(outputs)

    def infer_direct(self, batch: np.ndarray) -> np.ndarray:
        """Call the engine without queueing (warm-up)."""
        return self._call_engine(batch)
