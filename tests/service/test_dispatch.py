"""The batcher's scheduling, in-process with an engine whose cost is set: a queue that waits for the engine goes as
one batch the moment it is free (no polling), requests that arrive together form one batch, batches never exceed
max_batch_size, what cannot make the latency budget is refused, and cheap calls skip the thread hop."""

import asyncio
import threading
import time

import numpy as np
import pytest

from service.batching.batcher import INLINE_BELOW_S
from service.errors import Overloaded
from tests.support import TimedEngine, batcher_for


def rows(k: float, n: int = 1) -> np.ndarray:
    return np.full((n, 2), k, dtype=np.float32)


def test_requests_queued_behind_a_busy_engine_go_as_one_batch_without_polling():
    engine = TimedEngine(seconds=0.08)
    batcher = batcher_for(engine)
    looks = 0
    wait_for = asyncio.Condition.wait_for

    async def counted_wait_for(self, predicate):
        def looked():
            nonlocal looks
            looks += 1
            return predicate()
        return await wait_for(self, looked)

    async def scenario() -> list[np.ndarray]:
        asyncio.Condition.wait_for = counted_wait_for
        try:
            first = asyncio.ensure_future(batcher.infer(rows(1)))
            await asyncio.sleep(0.01)  # the first request is in the engine now
            rest = [batcher.infer(rows(k)) for k in range(2, 9)]
            return await asyncio.gather(first, *rest)
        finally:
            asyncio.Condition.wait_for = wait_for

    started = time.perf_counter()
    outputs = asyncio.run(scenario())
    elapsed = time.perf_counter() - started
    assert [float(o[0, 0]) for o in outputs] == [2.0 * k for k in range(1, 9)]  # each request its own rows
    assert [n for n, _ in engine.calls] == [1, 7]  # the seven that waited went together
    assert elapsed < 0.08 * 2 + 0.1
    # Woken by arrivals (8) and batches done (2), not every millisecond of the ~160 ms the engine was busy
    # (BentoML's CorkDispatcher looked ~140 times).
    assert looks <= 30, f"the dispatcher looked at the queue {looks} times: it is polling"


def test_requests_that_arrive_together_on_an_idle_engine_go_as_one_batch():
    engine = TimedEngine(seconds=0)
    batcher = batcher_for(engine)

    async def burst() -> list[np.ndarray]:
        return await asyncio.gather(*(batcher.infer(rows(k)) for k in range(8)))

    outputs = asyncio.run(burst())
    assert [float(o[0, 0]) for o in outputs] == [2.0 * k for k in range(8)]
    assert [n for n, _ in engine.calls] == [8]


def test_batches_hold_at_most_max_batch_size_rows_and_requests_are_never_split():
    engine = TimedEngine(seconds=0.02)
    batcher = batcher_for(engine, max_batch_size=8)

    async def scenario() -> list[np.ndarray]:
        first = asyncio.ensure_future(batcher.infer(rows(0)))
        await asyncio.sleep(0.005)
        return await asyncio.gather(first, *(batcher.infer(rows(k, n=3)) for k in range(1, 6)))

    outputs = asyncio.run(scenario())
    assert [n for n, _ in engine.calls] == [1, 6, 6, 3]  # 3+3 fit in 8, a third request would not
    assert [o.shape[0] for o in outputs] == [1, 3, 3, 3, 3, 3]
    assert all(np.all(o == 2.0 * k) for k, o in enumerate(outputs))


def test_a_failing_engine_fails_each_request_of_its_batch_and_the_queue_goes_on():
    engine = TimedEngine(seconds=0.01)
    batcher = batcher_for(engine)
    run = engine.run

    def run_or_fail(batch):
        if batch.shape[0] > 1:
            raise RuntimeError("engine failed")
        return run(batch)

    engine.run = run_or_fail

    async def scenario():
        first = asyncio.ensure_future(batcher.infer(rows(1)))
        await asyncio.sleep(0.002)
        failing = await asyncio.gather(*(batcher.infer(rows(k)) for k in range(3)), return_exceptions=True)
        return await first, failing, await batcher.infer(rows(5))

    first, failing, after = asyncio.run(scenario())
    assert float(first[0, 0]) == 2.0 and float(after[0, 0]) == 10.0
    assert all(isinstance(error, RuntimeError) for error in failing)


def test_the_oldest_queued_request_that_cannot_make_the_latency_budget_is_refused():
    engine = TimedEngine(seconds=0.05)
    batcher = batcher_for(engine, max_batch_size=2, max_latency_ms=120)  # queued calls predicted at 50 ms each

    async def scenario():
        first = asyncio.ensure_future(batcher.infer(rows(1)))
        await asyncio.sleep(0.005)
        queued = [asyncio.ensure_future(batcher.infer(rows(k))) for k in range(2, 8)]
        return await first, await asyncio.gather(*queued, return_exceptions=True)

    first, queued = asyncio.run(scenario())
    refused = [r for r in queued if isinstance(r, Overloaded)]
    answered = [r for r in queued if not isinstance(r, Exception)]
    assert float(first[0, 0]) == 2.0
    assert refused and answered, queued  # shed from the front until the rest fit the budget
    assert queued.index(refused[-1]) < queued.index(answered[0])  # the oldest go first


@pytest.mark.parametrize("seconds, n, inline", [(0, 4, True), (INLINE_BELOW_S * 4, 1, False),
                                                (INLINE_BELOW_S * 4, 64, False),
                                                # one call under the limit; three, together over it
                                                (INLINE_BELOW_S * 0.5, 64, True), (INLINE_BELOW_S * 0.5, 192, False)])
def test_cheap_engine_calls_run_on_the_event_loop_and_costly_ones_in_a_worker_thread(seconds, n, inline):
    async def thread_of_call() -> tuple[int, int]:
        engine = TimedEngine(seconds=seconds)  # (seconds a call, whatever its rows)
        batcher = batcher_for(engine)
        for _ in range(3):  # (the 64-row band priced too, as warm-up does)
            batcher.run_now(np.ones((64, 2), dtype=np.float32))
        await batcher.infer(np.ones((n, 2), dtype=np.float32))  # (64 rows: past the queue, measured the same way)
        return engine.calls[-1][1], threading.get_ident()

    engine_thread, loop_thread = asyncio.run(thread_of_call())
    assert (engine_thread == loop_thread) is inline
