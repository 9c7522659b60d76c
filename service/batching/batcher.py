"""One model's way to its engine in one worker: the queue (dispatcher.py) when requests can share an engine call;
straight to the engine, in chunks of at most max_batch_size rows, when batching is off, when a request fills whole
batches by itself, or when it is the only request its worker has begun (nothing could join it, and the queue's two
task switches cost a lone request 4-10 %); refused when it would wait too long.
"""

import asyncio
import time
from collections.abc import Callable

import anyio
import numpy as np

from service.batching.cost import EngineCost
from service.batching.dispatcher import Dispatcher
from service.config import ServeConfig
from service.errors import DeadlineUnmet, Overloaded, QueueFull
from service.upstream import REQUESTS

INLINE_BELOW_S = 10e-3
"""CPU engine calls predicted cheaper than this run on the event loop. A call in a worker thread costs the hop there
and back (80-140 us), and the event loop then waits for the GIL whenever the engine thread holds it (a quarter of
the loop's time under load with a worker per core, profiling.md): other requests were answered later behind a call
in a thread than behind the same call on the loop. Only a call longer than this (a heavy model's) leaves the loop,
so that health checks and the worker's other models are not held for all of it."""

Recorder = Callable[[np.ndarray, str, float], None]
"""Told each served engine call: its batch, the device it ran on and its seconds (metrics and drift)."""


class ModelBatcher:
    def __init__(self, model: str, engine, merge: Callable, config: ServeConfig) -> None:
        self.engine = engine  # .run(batch) -> (N, K) outputs; .device_for(shape) -> where such a batch runs
        self._model = model
        self._config = config
        self.max_rows = config.max_batch_size
        self.cost = EngineCost()
        self.record: Recorder | None = None
        """None during warm-up, so that metrics describe served traffic only."""
        self._waited: Callable[[float], None] | None = None  # told each request's wait in the queue, once recording
        self.background = False
        """True while the model serves only shadow copies (lifecycle/shadow.py): its calls then queue and leave the
        event loop, so that the loop stays free for the requests clients wait on."""
        self._pending = 0  # requests waiting for or in the engine
        self._direct_seconds = 0.0  # predicted engine time of the requests that went straight to it
        self._limiter = anyio.CapacityLimiter(1)  # one engine call at a time per model and worker
        self._queue = Dispatcher(self._engine, merge, self.max_rows, self._predict, config.max_latency_ms / 1000,
                                 waited=self._observe_wait)

    def _observe_wait(self, seconds: float) -> None:
        if self._waited is not None:
            self._waited(seconds)

    def _predict(self, shape: tuple[int, ...]) -> float:
        return self.cost.seconds(self.engine.device_for(shape), shape)

    async def infer(self, batch: np.ndarray, deadline_s: float | None = None) -> np.ndarray:
        """One request's rows in, its own outputs out. Refused at once (429) while max_queue requests wait already;
        with a client deadline (seconds from when uvicorn read the request), refused (504) when the work ahead and
        its own are predicted to take longer than is left of it, and answered 504 if it passes while the request
        waits."""
        if self._pending >= self._config.max_queue and self.record:  # (warm-up's bursts are its own)
            raise QueueFull(f"{self._pending} requests for model {self._model!r} are already waiting in this worker "
                            f"(MODELSERVE_MAX_QUEUE={self._config.max_queue}); retry later")
        left_s = None if deadline_s is None else deadline_s - REQUESTS.waited()  # (its wait for the loop counts)
        if left_s is not None and (predicted := self.predicted_seconds(batch)) > left_s:
            raise DeadlineUnmet(f"the request's timeout of {deadline_s * 1e3:g} ms cannot be met: "
                                f"{(deadline_s - left_s) * 1e3:.3g} ms have passed since it arrived, and the work "
                                f"queued ahead of it and its own are predicted to take {predicted * 1e3:.3g} ms")
        self._pending += 1
        try:
            if left_s is None:
                return await self._infer(batch)
            return await asyncio.wait_for(self._infer(batch), max(left_s, 0.0))
        except TimeoutError:
            raise DeadlineUnmet(f"the request's timeout of {deadline_s * 1e3:g} ms passed before it was answered") \
                from None
        finally:
            self._pending -= 1

    def predicted_seconds(self, batch: np.ndarray) -> float:
        """Until this batch would be answered: the engine work queued or running ahead of it, and its own call."""
        return self._direct_seconds + self._queue.queued_seconds() + self._predict(batch.shape)

    async def _infer(self, batch: np.ndarray) -> np.ndarray:
        if self._config.batching and batch.shape[0] < self.max_rows:
            if self.background or not REQUESTS.alone():
                return await self._queue.submit(batch, REQUESTS.waited())
            self._observe_wait(0.0)  # (it waited for nobody)
        chunks = [batch[i:i + self.max_rows] for i in range(0, batch.shape[0], self.max_rows)]
        seconds = sum(self._predict(chunk.shape) for chunk in chunks)
        # (its wait for the event loop counts too: behind calls on the loop, requests wait there unread)
        ahead = REQUESTS.waited() + self._direct_seconds + self._queue.queued_seconds()
        if ahead + seconds > self._config.max_latency_ms / 1000:
            raise Overloaded("the server is overloaded: this request would miss the latency budget; retry later")
        self._direct_seconds += seconds
        try:  # (a request of several chunks would hold the loop for all of them: priced whole)
            outputs = [await self._engine(chunk, inline=seconds < INLINE_BELOW_S) for chunk in chunks]
        finally:
            self._direct_seconds -= seconds
        return outputs[0] if len(outputs) == 1 else np.concatenate(outputs)

    async def _engine(self, batch: np.ndarray, inline: bool = True) -> np.ndarray:
        """One engine call: on the event loop when the engine is idle and a CPU call is priced under INLINE_BELOW_S
        (`inline`: the whole request is, where it is split in calls), in a worker thread otherwise (ONNX Runtime and
        torch release the GIL, so the loop keeps reading requests meanwhile). A CUDA call always leaves the loop:
        its CPU waits on the GPU (on the loop it served 0.79x at c=8 on an H200)."""
        device = self.engine.device_for(batch.shape)
        if inline and self._limiter.borrowed_tokens == 0 and device == "cpu" and not self.background and \
                self.cost.seconds(device, batch.shape) < INLINE_BELOW_S:
            return self.run_now(batch, device)
        return await anyio.to_thread.run_sync(self.run_now, batch, device, limiter=self._limiter)

    def run_now(self, batch: np.ndarray, device: str | None = None) -> np.ndarray:
        """One engine call in this thread, timed for the cost model and recorded (warm-up calls it directly)."""
        device = device or self.engine.device_for(batch.shape)
        started = time.perf_counter()
        out = self.engine.run(batch)
        seconds = time.perf_counter() - started
        self.cost.observe(device, batch.shape, seconds)
        if self.record:
            self.record(batch, device, seconds)
        return out

    async def close(self) -> None:
        """Once the requests already here are answered, stop the queue's controller, so that nothing holds this
        batcher and its engine any more (a version replaced by a newer one)."""
        while self._pending:
            await asyncio.sleep(0.05)
        self._queue.close()
        await asyncio.sleep(0)  # (the controller ends)

    def start_recording(self, record: Recorder, waited: Callable[[float], None]) -> None:
        """After warm-up: tell `record` of every engine call, `waited` of every request's wait in the queue."""
        self._waited, self.record = waited, record
