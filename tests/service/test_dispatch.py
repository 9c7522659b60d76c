"""The batcher's scheduling, in-process with an engine whose cost is set: a queue that waits for the
engine is dispatched the moment it is free (no polling), a lone request runs without the controller while
a burst still forms one batch, and cheap calls skip the thread hop."""

import asyncio
import collections
import threading
import time

import numpy as np

from service.batching import INLINE_BELOW_S, ModelBatcher


class TimedEngine:
    """Returns its input's row sums; sleeps `seconds` per call (time.sleep releases the GIL like ORT does)."""

    backend = "onnx"
    device = "cpu"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.calls: list[tuple[int, int]] = []  # (rows, thread id)
        self.tasks: list[asyncio.Task | None] = []  # the asyncio task each call ran in (None: a worker thread)

    def run(self, batch: np.ndarray) -> np.ndarray:
        self.calls.append((batch.shape[0], threading.get_ident()))
        try:
            self.tasks.append(asyncio.current_task())
        except RuntimeError:  # no event loop in this thread
            self.tasks.append(None)
        if self.seconds:
            time.sleep(self.seconds)
        return batch.sum(axis=1, keepdims=True)

    def device_for(self, batch: np.ndarray) -> str:
        return self.device


def batcher_for(engine: TimedEngine) -> ModelBatcher:
    batcher = ModelBatcher("dispatch-test", engine, "onnx", None, max_batch_size=64, max_latency_ms=60_000)
    for _ in range(20):  # what warm-up does: the engine's cost per row is known before traffic
        batcher.infer_direct(np.ones((1, 2), dtype=np.float32))
    engine.calls.clear()
    engine.tasks.clear()
    return batcher


async def start_controller(batcher: ModelBatcher, engine: TimedEngine) -> None:
    """The first request starts the dispatcher's controller (the service's warm-up sends it); its call is
    forgotten. Only after it can a request find the controller idle and run alone."""
    await batcher.infer(np.ones((1, 2), dtype=np.float32))
    engine.calls.clear()
    engine.tasks.clear()


def test_requests_queued_behind_a_busy_engine_go_as_one_batch_without_polling():
    engine = TimedEngine(seconds=0.08)
    batcher = batcher_for(engine)
    looks = 0

    class WatchedQueue(collections.deque):
        """Counts how often the dispatcher looks at the queue's length: once or more per wake-up."""

        def __len__(self) -> int:
            nonlocal looks
            looks += 1
            return super().__len__()

    batcher._dispatcher._queue = WatchedQueue()

    async def scenario() -> list[np.ndarray]:
        first = asyncio.ensure_future(batcher.infer(np.full((1, 2), 1, dtype=np.float32)))
        await asyncio.sleep(0.01)  # the first request is in the engine now
        rest = [batcher.infer(np.full((1, 2), k, dtype=np.float32)) for k in range(2, 9)]
        return await asyncio.gather(first, *rest)

    started = time.perf_counter()
    outputs = asyncio.run(scenario())
    elapsed = time.perf_counter() - started
    assert [float(o[0, 0]) for o in outputs] == [2.0 * k for k in range(1, 9)]  # each request its own rows
    assert [rows for rows, _ in engine.calls] == [1, 7]  # the seven that waited went together
    assert elapsed < 0.08 * 2 + 0.1
    # Woken by arrivals (8) and engine releases (2), not every millisecond of the ~160 ms the engine was
    # busy (BentoML's own controller looked ~140 times).
    assert looks <= 80, f"the dispatcher looked at the queue {looks} times: it is polling"


def test_a_lone_request_on_an_idle_engine_runs_in_its_own_task():
    engine = TimedEngine(seconds=0)
    batcher = batcher_for(engine)

    async def lone_requests() -> list[asyncio.Task]:
        await start_controller(batcher, engine)
        tasks = []
        for k in range(3):
            task = asyncio.ensure_future(batcher.infer(np.full((1, 2), k, dtype=np.float32)))
            assert float((await task)[0, 0]) == 2.0 * k
            tasks.append(task)
        return tasks

    tasks = asyncio.run(lone_requests())
    # Not the controller's task: the request skipped the two task switches through it.
    assert engine.tasks == tasks


def test_requests_that_arrive_together_on_an_idle_engine_still_go_as_one_batch():
    # The first of them finds the engine idle; if it ran at once, on the event loop, the others would each
    # find it idle too and no batch would ever form. It yields once first, so the others queue behind it.
    engine = TimedEngine(seconds=0)
    batcher = batcher_for(engine)

    async def burst() -> list[np.ndarray]:
        await start_controller(batcher, engine)
        return await asyncio.gather(*(batcher.infer(np.full((1, 2), k, dtype=np.float32)) for k in range(8)))

    outputs = asyncio.run(burst())
    assert [float(o[0, 0]) for o in outputs] == [2.0 * k for k in range(8)]
    assert [rows for rows, _ in engine.calls] == [8]


def test_while_a_lone_request_runs_the_requests_behind_it_wait_and_go_as_one_batch():
    # The lone request runs outside the controller; the controller must still not start a second batch
    # while it runs (one batch at a time is what lets the queue grow into a batch).
    engine = TimedEngine(seconds=0.08)  # a worker-thread call
    batcher = batcher_for(engine)

    async def scenario() -> list[np.ndarray]:
        await start_controller(batcher, engine)
        first = asyncio.ensure_future(batcher.infer(np.full((1, 2), 1, dtype=np.float32)))
        await asyncio.sleep(0.01)
        assert engine.tasks[-1] is None  # it runs alone, in a worker thread
        seven = [asyncio.ensure_future(batcher.infer(np.full((1, 2), k, dtype=np.float32))) for k in range(2, 9)]
        await asyncio.sleep(0.01)
        five = [batcher.infer(np.full((1, 2), k, dtype=np.float32)) for k in range(9, 14)]
        return await asyncio.gather(first, *seven, *five)

    outputs = asyncio.run(scenario())
    assert [float(o[0, 0]) for o in outputs] == [2.0 * k for k in range(1, 14)]
    assert [rows for rows, _ in engine.calls] == [1, 12]
    assert not batcher._dispatcher._sema.is_locked() and not batcher._dispatcher._queue


def test_cheap_engine_calls_run_on_the_event_loop_and_costly_ones_in_a_worker_thread():
    async def thread_of_call(engine: TimedEngine, rows: int) -> tuple[int, int]:
        batcher = batcher_for(engine)
        await batcher.infer(np.ones((rows, 2), dtype=np.float32))
        return engine.calls[-1][1], threading.get_ident()

    engine_thread, loop_thread = asyncio.run(thread_of_call(TimedEngine(seconds=0), rows=4))
    assert engine_thread == loop_thread
    engine_thread, loop_thread = asyncio.run(thread_of_call(TimedEngine(seconds=INLINE_BELOW_S * 4), rows=1))
    assert engine_thread != loop_thread
    # A request of max_batch_size rows or more skips the queue; it is measured the same way.
    engine_thread, loop_thread = asyncio.run(thread_of_call(TimedEngine(seconds=INLINE_BELOW_S * 4), rows=64))
    assert engine_thread != loop_thread
