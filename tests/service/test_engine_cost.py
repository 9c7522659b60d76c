"""The one latency model (service/batching/cost.py): each band of device, width and rows priced at what its recent
calls cost, and what the batcher does with the prices, on engines with set cost curves (tests/support.py)."""

import asyncio
import threading

import numpy as np
import pytest

from service.batching.batcher import INLINE_BELOW_S
from service.batching.cost import EngineCost
from service.errors import Overloaded
from service.runtime.engines import SmallBatchesOnCpu
from tests.support import CurveEngine, warmed_up

WARM_UP_SIZES = (1, 2, 4, 8, 16, 32, 64)


def tokens(rows: int, width: int) -> np.ndarray:
    return np.ones((rows, width), dtype=np.int64)


def transformer_seconds(shape: tuple[int, int]) -> float:
    """The default transformer's cost on one CPU thread: about 33 us a call and 2 us a token (measured, 2-core
    machine: 96 us for 1 row of 32 tokens, 4.2 ms for 64)."""
    return 33e-6 + 2e-6 * shape[0] * shape[1]


def warm(cost: EngineCost, device: str, width: int, seconds, first_call_factor: float = 1.0) -> None:
    """What warm-up does: every batch size, once, then three more times; the first call of a shape pays
    `first_call_factor` times its cost (allocations)."""
    for repeat in range(4):
        for rows in WARM_UP_SIZES:
            cost.observe(device, (rows, width), seconds((rows, width)) * (first_call_factor if repeat == 0 else 1.0))


def test_each_size_is_priced_at_what_it_cost_and_a_first_call_s_allocations_do_not_count():
    cost = EngineCost()
    assert cost.seconds("cpu", (1, 32)) == 0.0  # nothing known: cheap, as before any call
    warm(cost, "cpu", 32, transformer_seconds, first_call_factor=10.0)
    for rows in WARM_UP_SIZES:
        assert cost.seconds("cpu", (rows, 32)) == pytest.approx(transformer_seconds((rows, 32)))
    # A size between two warmed ones: its band's cost per element (3 rows at 2 rows' rate).
    assert cost.seconds("cpu", (3, 32)) == pytest.approx(1.5 * transformer_seconds((2, 32)))


def test_single_row_traffic_moves_the_single_row_price_and_not_the_bulk_one():
    # Single rows at 1.5 times warm-up's cost (a busier machine): one row is priced at what it costs now, and
    # 64 rows at what warm-up measured, not at 64 single rows (6.1 ms against 4.2) as a per-row average would.
    cost = EngineCost()
    warm(cost, "cpu", 32, transformer_seconds)
    one_now = 1.5 * transformer_seconds((1, 32))
    for _ in range(100):
        cost.observe("cpu", (1, 32), one_now)
    assert cost.seconds("cpu", (1, 32)) == pytest.approx(one_now, rel=1e-3)
    assert cost.seconds("cpu", (64, 32)) == pytest.approx(transformer_seconds((64, 32)))


@pytest.mark.parametrize("seed", range(5))
def test_calls_paused_now_and_then_move_the_price_little(seed):
    # One call in 20 paused 1 ms by the scheduler, ten times its cost: counted at most twice its cost.
    cost = EngineCost()
    warm(cost, "cpu", 32, transformer_seconds)
    rng = np.random.default_rng(seed)
    priced = []
    for _ in range(400):
        cost.observe("cpu", (1, 32), transformer_seconds((1, 32)) + (1e-3 if rng.random() < 0.05 else 0.0))
        priced.append(cost.seconds("cpu", (1, 32)) / transformer_seconds((1, 32)))
    assert max(priced) < 1.35 and np.median(priced) < 1.1, (max(priced), np.median(priced))


def test_devices_and_widths_are_priced_apart():
    cost = EngineCost()
    warm(cost, "cuda", 32, lambda shape: 400e-6 + 1e-9 * shape[0] * shape[1])  # a GPU: a floor, rows nearly free
    warm(cost, "cpu", 32, transformer_seconds)
    warm(cost, "cpu", 8, lambda shape: 33e-6 + 1e-6 * shape[0] * shape[1])  # shorter inputs: cheaper per token
    for _ in range(50):  # single rows on the CPU twin, between bulk calls on the GPU
        cost.observe("cpu", (1, 32), transformer_seconds((1, 32)))
        cost.observe("cuda", (64, 32), 400e-6)
    assert cost.seconds("cuda", (64, 32)) == pytest.approx(400e-6, rel=0.01)
    assert cost.seconds("cpu", (1, 32)) == pytest.approx(transformer_seconds((1, 32)))
    assert cost.seconds("cpu", (8, 8)) == pytest.approx(33e-6 + 64e-6)
    # 40 tokens is in 32's band (32-63), at its cost per token; 3 tokens, shorter than any call yet, at 8's.
    assert cost.seconds("cpu", (1, 40)) == pytest.approx(transformer_seconds((1, 32)) * 40 / 32)
    assert cost.seconds("cpu", (1, 3)) == pytest.approx((33e-6 + 8e-6) * 3 / 8)
    assert cost.seconds("tpu", (1, 8)) == 0.0


def per_call(ms: float, rows=(1, 2, 4, 8)) -> dict[int, float]:
    """A curve (ms per row by batch size) that costs `ms` a call whatever its size."""
    return {size: ms / size for size in rows}


def test_a_request_larger_than_a_batch_is_priced_per_engine_call_not_per_row():
    # Each call costs 2 ms whatever its rows. After single-row traffic a per-row average priced 80 rows at
    # 160 ms and refused them under a 100 ms budget; they take 10 calls of 8 rows, 20 ms.
    async def traffic():
        batcher = await warmed_up(CurveEngine({2: per_call(2.0)}), max_latency_ms=100)
        for _ in range(30):
            await batcher.infer(np.ones((1, 2), dtype=np.float32))
        served_80 = await batcher.infer(np.ones((80, 2), dtype=np.float32))
        with pytest.raises(Overloaded):  # 60 calls, 120 ms: past the budget
            await batcher.infer(np.ones((480, 2), dtype=np.float32))
        return batcher, served_80, await batcher.infer(np.ones((1, 2), dtype=np.float32))

    batcher, served_80, after = asyncio.run(traffic())
    assert served_80.shape == (80, 1) and after.shape == (1, 1)
    assert [rows for rows, _ in batcher.engine.calls[30:]] == [8] * 10 + [1]  # the refused request ran nothing


def test_a_cheap_call_at_one_width_runs_inline_after_traffic_at_another():
    # A token costs a 48th of the inline limit. After single rows of 16 tokens, 4 rows of 8 tokens (2/3 of the
    # limit) run on the event loop; a per-row average priced them as 4 rows of 16 (4/3 of it), for a thread.
    ms_per_token = INLINE_BELOW_S * 1000 / 48
    engine = CurveEngine({width: {rows: width * ms_per_token for rows in (1, 2, 4, 8)} for width in (8, 16)})

    async def traffic():
        batcher = await warmed_up(engine, tokens=True)
        for _ in range(30):
            await batcher.infer(tokens(1, 16))
        loop_thread = threading.get_ident()
        await batcher.infer(tokens(4, 8))
        short = engine.calls[-1][1]
        await batcher.infer(tokens(4, 16))
        return loop_thread, short, engine.calls[-1][1]

    loop_thread, short, long = asyncio.run(traffic())
    assert short == loop_thread, "4 rows of 8 tokens (2/3 of the limit) should run on the event loop"
    assert long != loop_thread, "4 rows of 16 tokens (4/3 of the limit) should go to a worker thread"


def split(gpu_ms_per_call: float, cpu_ms_per_row: float) -> SmallBatchesOnCpu:
    return SmallBatchesOnCpu(CurveEngine({16: per_call(gpu_ms_per_call)}, device="cuda"),
                             CurveEngine({16: {rows: cpu_ms_per_row for rows in (1, 2, 4, 8)}}))


def test_with_a_cpu_twin_bulk_on_the_gpu_is_priced_at_the_gpu_s_cost():
    # The CPU twin runs single rows (0.4 ms each); the GPU 1 ms a call of up to 8 rows. After single-row traffic
    # one per-row average priced 400 rows at 160 ms and refused them under 100 ms; on the GPU: 50 calls, 50 ms.
    engine = split(gpu_ms_per_call=1.0, cpu_ms_per_row=0.4)

    async def traffic():
        batcher = await warmed_up(engine, tokens=True, max_latency_ms=100)
        for _ in range(30):
            await batcher.infer(tokens(1, 16))
        return await batcher.infer(tokens(400, 16))

    bulk = asyncio.run(traffic())
    assert engine.cpu_rows == {8: 2, 16: 2}
    assert bulk.shape == (400, 1)
    assert [rows for rows, _ in engine.gpu.calls] == [8] * 50 and len(engine.cpu.calls) == 30


def test_gpu_calls_leave_the_event_loop_however_cheap():
    # 0.3 ms on the GPU is below the thread hop's threshold, but the CPU only waits on the GPU meanwhile,
    # and a blocked loop cannot take the requests that arrive (paired-gpu-inline.md: 0.79x at c=8).
    engine = split(gpu_ms_per_call=0.3, cpu_ms_per_row=0.1)

    async def traffic():
        batcher = await warmed_up(engine, tokens=True)
        await batcher.infer(tokens(1, 16))  # 0.1 ms on the CPU twin
        await batcher.infer(tokens(8, 16))  # 0.3 ms on the GPU
        return threading.get_ident()

    loop_thread = asyncio.run(traffic())
    assert engine.cpu.calls[-1][1] == loop_thread
    assert engine.gpu.calls[-1][1] != loop_thread
