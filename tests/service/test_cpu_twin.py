"""On CUDA, the batches warm-up measured faster on the CPU run on a CPU twin of the engine; the rest on the GPU.

The two halves here are engines with set cost curves (the GPU's: a floor per call, then cheap rows), so the
split's measurement and routing run without a GPU; tests/service/test_gpu_serving.py runs it on CUDA."""

import asyncio

import numpy as np
from prometheus_client import REGISTRY

from service.runtime.engines import SmallBatchesOnCpu
from service.runtime.warm_up import rows_faster_on_cpu
from tests.support import CurveEngine, warmed_up

# ms per row by batch size. The GPU: 2 ms a call whatever its size, up to 8 rows.
GPU_FLOOR = {1: 2.0, 2: 1.0, 4: 0.5, 8: 0.25}
CPU_SHORT = {1: 0.5, 2: 0.5, 4: 0.8, 8: 0.8}  # faster up to 2 rows (0.8 > 0.5 at 4)
CPU_LONG = {1: 4.0, 2: 4.0, 4: 4.0, 8: 4.0}  # a long input: slower on the CPU from one row


def split_engine(cpu_curves: dict[int, dict[int, float]]) -> SmallBatchesOnCpu:
    return SmallBatchesOnCpu(CurveEngine({16: GPU_FLOOR}, device="cuda"), CurveEngine(cpu_curves))


def test_the_cpu_takes_the_sizes_up_to_the_first_the_gpu_runs_faster_and_is_not_timed_past_it():
    engine = split_engine({16: CPU_SHORT})
    batches = [np.ones((rows, 4), dtype=np.int64) for rows in (8, 1, 4, 2)]
    for batch in batches:
        engine.gpu.run(batch)
    assert rows_faster_on_cpu(engine.cpu.run, engine.gpu.run, batches) == 2
    assert max(rows for rows, _ in engine.cpu.calls) == 4  # 8 rows on the CPU would only have cost time


def test_a_gpu_faster_from_one_row_keeps_every_batch():
    engine = split_engine({16: CPU_LONG})
    batches = [np.ones((rows, 4), dtype=np.int64) for rows in (1, 2)]
    assert rows_faster_on_cpu(engine.cpu.run, engine.gpu.run, batches) == 0
    engine.cpu_rows = {4: 0}
    assert engine.device_for((1, 4)) == "cuda"


def test_until_warm_up_measures_it_everything_runs_on_the_gpu():
    engine = split_engine({16: CPU_SHORT})
    engine.run(np.ones((1, 4), dtype=np.int64))
    assert engine.cpu.calls == [] and len(engine.gpu.calls) == 1


def test_a_batch_takes_the_bucket_that_holds_its_width_and_past_the_last_the_last():
    engine = split_engine({16: CPU_SHORT})
    engine.cpu_rows = {8: 4, 16: 1}
    assert [engine.device_for((rows, width)) for rows, width in [(4, 3), (5, 8), (1, 9), (2, 16), (1, 40)]] == \
        ["cpu", "cuda", "cpu", "cuda", "cpu"]


def seconds_on(device: str) -> float:
    return REGISTRY.get_sample_value("modelserve_inference_seconds_sum",
                                     {"model": "curve", "version": "test", "backend": "onnx", "device": device}) or 0.0


def test_warm_up_splits_by_length_and_requests_go_where_they_run_faster():
    # Short inputs are cheap on the CPU up to 2 rows; 16-token inputs are dear there from the first row.
    engine = split_engine({8: CPU_SHORT, 16: CPU_LONG})
    before = {device: seconds_on(device) for device in ("cpu", "cuda")}

    async def traffic() -> list[np.ndarray]:
        batcher = await warmed_up(engine, tokens=True)
        lone_short = await batcher.infer(np.full((1, 5), 3, dtype=np.int64))
        lone_long = await batcher.infer(np.full((1, 12), 4, dtype=np.int64))
        burst = await asyncio.gather(*(batcher.infer(np.full((1, 5), k, dtype=np.int64)) for k in range(8)))
        return [lone_short, lone_long, *burst]

    outputs = asyncio.run(traffic())
    assert engine.cpu_rows == {8: 2, 16: 0}
    assert [float(o[0, 0]) for o in outputs] == [15.0, 48.0] + [5.0 * k for k in range(8)]  # each its own answer
    assert engine.cpu.lengths[0] == 5 and engine.gpu.lengths[0] == 12  # the two lone requests
    assert max(rows for rows, _ in engine.cpu.calls) <= 2
    assert max(rows for rows, _ in engine.gpu.calls) > 2, "the burst must still merge, on the GPU"
    # Each call is timed under the device it ran on.
    after = {device: seconds_on(device) for device in ("cpu", "cuda")}
    assert after["cpu"] > before["cpu"] and after["cuda"] > before["cuda"]
