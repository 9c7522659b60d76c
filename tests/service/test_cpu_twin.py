"""On CUDA, the batches warm-up measured faster on the CPU run on a CPU twin of the engine; the rest on the GPU.

The two halves here are engines with set cost curves (the GPU's: a floor per call, then cheap rows), so the
split's measurement and routing run without a GPU; tests/service/test_gpu_serving.py runs it on CUDA."""

import asyncio
from types import SimpleNamespace

import numpy as np

from service import metrics
from service.batch_limit import BatchLimits, rows_faster_on_cpu
from service.batching import ModelBatcher
from service.config import ServeConfig
from service.engines import SmallBatchesOnCpu
from service.inputs import TokenSchema
from service.registry import ModelRegistry, ServedModel
from tests.service.test_batch_limit import CurveEngine

# ms per row by batch size. The GPU: 2 ms a call whatever its size, up to 8 rows.
GPU_FLOOR = {1: 2.0, 2: 1.0, 4: 0.5, 8: 0.25}
CPU_SHORT = {1: 0.5, 2: 0.5, 4: 0.8, 8: 0.8}  # faster up to 2 rows (0.8 > 0.5 at 4)
CPU_LONG = {1: 4.0, 2: 4.0, 4: 4.0, 8: 4.0}  # a long input: slower on the CPU from one row


def split_engine(cpu_curves: dict[int, dict[int, float]]) -> SmallBatchesOnCpu:
    gpu = CurveEngine({16: GPU_FLOOR})
    gpu.device = "cuda"
    return SmallBatchesOnCpu(gpu, CurveEngine(cpu_curves))


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
    assert engine.device_for(np.ones((1, 4))) == "cuda"


def test_until_warm_up_measures_it_everything_runs_on_the_gpu():
    engine = split_engine({16: CPU_SHORT})
    engine.run(np.ones((1, 4), dtype=np.int64))
    assert engine.cpu.calls == [] and len(engine.gpu.calls) == 1


async def served(engine: SmallBatchesOnCpu, max_latency_ms: int = 60_000) -> ModelBatcher:
    """A registry holding one token model on `engine`, warmed up as the service does at start."""
    config = ServeConfig(models=("split",), max_batch_size=8)
    batcher = ModelBatcher("split", engine, "onnx", 0, max_batch_size=8, max_latency_ms=max_latency_ms)
    registry = ModelRegistry(config)
    artifacts = SimpleNamespace(name="split", manifest={"input_kind": "tokens"})
    registry.models["split"] = ServedModel(artifacts, TokenSchema(vocab_size=100, max_len=16, pad_id=0), batcher,
                                           "onnx", "cuda")
    await registry.warm_up()
    for half in (engine.cpu, engine.gpu):
        half.calls.clear()
        half.lengths.clear()
    return batcher


def test_warm_up_splits_by_length_and_requests_go_where_they_run_faster():
    # Short inputs are cheap on the CPU up to 2 rows; 16-token inputs are dear there from the first row.
    engine = split_engine({8: CPU_SHORT, 16: CPU_LONG})
    before = {device: metrics.INFERENCE_SECONDS.labels(model="split", backend="onnx", device=device)._sum.get()
              for device in ("cpu", "cuda")}

    async def traffic() -> tuple[ModelBatcher, list[np.ndarray]]:
        batcher = await served(engine)
        lone_short = await batcher.infer(np.full((1, 5), 3, dtype=np.int64))
        lone_long = await batcher.infer(np.full((1, 12), 4, dtype=np.int64))
        burst = await asyncio.gather(*(batcher.infer(np.full((1, 5), k, dtype=np.int64)) for k in range(8)))
        return batcher, [lone_short, lone_long, *burst]

    batcher, outputs = asyncio.run(traffic())
    assert engine.cpu_rows == BatchLimits({8: 2, 16: 0})
    assert [float(o[0, 0]) for o in outputs] == [15.0, 48.0] + [5.0 * k for k in range(8)]  # each its own answer
    assert engine.cpu.lengths[0] == 5 and engine.gpu.lengths[0] == 12  # the two lone requests
    assert max(rows for rows, _ in engine.cpu.calls) <= 2
    assert max(rows for rows, _ in engine.gpu.calls) > 2, "the burst must still merge, on the GPU"
    # Each call is timed under the device it ran on.
    after = {device: metrics.INFERENCE_SECONDS.labels(model="split", backend="onnx", device=device)._sum.get()
             for device in ("cpu", "cuda")}
    assert after["cpu"] > before["cpu"] and after["cuda"] > before["cuda"]
    assert batcher.limits.rows_for(np.ones((1, 5))) == 8  # the batch limit is measured on the split engine
