"""The batch limit measured at warm-up: batches stop growing where the engine's cost per row stops falling."""

import asyncio
import os
import subprocess
import sys
import tempfile
from types import SimpleNamespace

import numpy as np
import pytest

from service.batch_limit import BatchLimits, cost_per_row, efficient_batch_limit, machine_to_itself
from service.batching import ModelBatcher
from service.config import ServeConfig
from service.inputs import FeatureSchema, TokenSchema
from service.registry import ModelRegistry, ServedModel
from tests.paths import REPO
from tests.service.test_dispatch import TimedEngine

MS = 1e-3
US = 1e-6

# Measured 2026-11-22, seconds per row by batch size.
HEAVY_CPU_CURVE = {1: 10.9 * MS, 2: 10.6 * MS, 4: 10.3 * MS, 8: 10.45 * MS, 16: 11.0 * MS, 32: 12.5 * MS, 64: 11.8 * MS}
DEFAULT_TRANSFORMER = {1: 224 * US, 2: 174 * US, 4: 146 * US, 8: 136 * US, 16: 97 * US, 32: 97 * US, 64: 98 * US}
# The default transformer at 32 tokens on a busy machine: by the engine alone 8 rows would look best.
DEFAULT_TRANSFORMER_NOISY = {1: 293 * US, 2: 129 * US, 4: 118 * US, 8: 122 * US, 16: 132 * US, 32: 129 * US,
                             64: 158 * US}


@pytest.mark.parametrize("costs, limit", [
    (HEAVY_CPU_CURVE, 8),  # 8 is within 5 % of the cheapest (4); 16 and up are not
    (DEFAULT_TRANSFORMER, 64),  # keeps falling
    (DEFAULT_TRANSFORMER_NOISY, 32),  # the cost of each call (a thread hop) still favours 32 rows
    ({1: 10.0 * MS, 2: 10.2 * MS, 4: 10.4 * MS, 8: 10.6 * MS}, 4),  # flat with noise: larger batches in the slack
    ({1: 5.0 * MS, 2: 6.0 * MS, 4: 8.0 * MS}, 1),  # dearer per row from the start: no merging at all
])
def test_the_limit_is_the_largest_batch_within_the_slack_of_the_cheapest(costs, limit):
    assert efficient_batch_limit(costs) == limit


def test_without_the_cost_per_call_a_noisy_curve_would_cut_batches_that_pay():
    assert efficient_batch_limit(DEFAULT_TRANSFORMER_NOISY, call_overhead_s=0) == 8


def test_a_token_batch_takes_the_limit_of_the_shortest_bucket_that_holds_it():
    limits = BatchLimits({8: 64, 16: 32, 64: 4})
    assert [limits.rows_for(np.zeros((1, length))) for length in (3, 8, 9, 16, 17, 64)] == [64, 64, 32, 32, 4, 4]
    assert BatchLimits.fixed(16).rows_for(np.zeros((5, 2))) == 16


class CurveEngine(TimedEngine):
    """Costs ms_per_row[length][rows] per row: a dict by input length (feature models: length 2)."""

    def __init__(self, ms_per_row: dict[int, dict[int, float]]) -> None:
        super().__init__(seconds=0)
        self.ms_per_row = ms_per_row
        self.lengths: list[int] = []  # of each call's batch

    def run(self, batch: np.ndarray) -> np.ndarray:
        rows, length = batch.shape
        self.lengths.append(length)
        curve = self.ms_per_row[min(key for key in self.ms_per_row if key >= length)]
        self.seconds = curve[min(key for key in curve if key >= rows)] * rows / 1000
        return super().run(batch)


RISING_PAST_4 = {1: 2.0, 2: 1.8, 4: 1.6, 8: 3.0}
FALLING = {1: 2.0, 2: 1.2, 4: 0.7, 8: 0.4}


def test_timing_an_engine_finds_where_its_cost_per_row_turns():
    engine = CurveEngine({2: RISING_PAST_4})
    costs = cost_per_row(engine.run, [np.ones((rows, 2), dtype=np.float32) for rows in RISING_PAST_4])
    assert costs.keys() == RISING_PAST_4.keys()
    assert efficient_batch_limit(costs) == 4
    assert all(costs[rows] >= ms / 1000 for rows, ms in RISING_PAST_4.items())  # (sleeps never run short)


async def warmed_up(engine: CurveEngine, tokens: bool = False, measure: bool = True,
                    max_latency_ms: int = 60_000) -> ModelBatcher:
    """Warm a registry holding one model on `engine`, as the service does at start (the batcher then
    belongs to the calling event loop)."""
    config = ServeConfig(models=("curve",), max_batch_size=8, measure_batch_limit=measure)
    schema = TokenSchema(vocab_size=100, max_len=16, pad_id=0) if tokens else FeatureSchema(("a", "b"))
    batcher = ModelBatcher("curve", engine, "onnx", 0 if tokens else None, max_batch_size=8,
                           max_latency_ms=max_latency_ms)
    registry = ModelRegistry(config)
    artifacts = SimpleNamespace(name="curve", manifest={"input_kind": "tokens" if tokens else "features"})
    registry.models["curve"] = ServedModel(artifacts, schema, batcher, "onnx", "cpu")
    await registry.warm_up()
    batcher.engine.calls.clear()
    batcher.engine.lengths.clear()
    return batcher


def test_warm_up_limits_batches_to_what_still_pays_and_the_batcher_keeps_to_it():
    async def traffic() -> tuple[ModelBatcher, list[np.ndarray]]:
        batcher = await warmed_up(CurveEngine({2: RISING_PAST_4}))
        ones = [batcher.infer(np.full((1, 2), k, dtype=np.float32)) for k in range(10)]
        six = batcher.infer(np.arange(12, dtype=np.float32).reshape(6, 2))  # more rows than the limit
        return batcher, await asyncio.gather(*ones, six)

    batcher, (*ones, six) = asyncio.run(traffic())
    assert batcher.limits == BatchLimits({0: 4})
    assert [float(o[0, 0]) for o in ones] == [2.0 * k for k in range(10)]  # each request its own answer
    np.testing.assert_array_equal(six[:, 0], np.arange(12).reshape(6, 2).sum(axis=1))
    rows = [rows for rows, _ in batcher.engine.calls]
    assert sum(rows) == 16 and max(rows) == 4, rows
    assert any(r > 1 for r in rows), f"requests must still merge up to the limit: {rows}"


MIXED_LENGTHS = (5, 5, 12, 5, 12, 5, 12, 12)


def test_token_models_get_a_limit_per_length_bucket():
    # Short inputs keep getting cheaper per row with batch size; long ones turn past 4 rows.
    engine = CurveEngine({8: FALLING, 16: RISING_PAST_4})

    async def traffic() -> tuple[ModelBatcher, list[np.ndarray]]:
        batcher = await warmed_up(engine, tokens=True)
        short = await asyncio.gather(*(batcher.infer(np.full((1, 5), k, dtype=np.int64)) for k in range(8)))
        long = await asyncio.gather(*(batcher.infer(np.full((1, 12), k, dtype=np.int64)) for k in range(8)))
        # the first waiting request is short, but the batch takes long ones too: their limit is the batch's
        mixed = await asyncio.gather(*(batcher.infer(np.full((1, length), k, dtype=np.int64))
                                       for k, length in enumerate(MIXED_LENGTHS)))
        return batcher, [*short, *long, *mixed]

    batcher, outputs = asyncio.run(traffic())
    assert batcher.limits == BatchLimits({8: 8, 16: 4})
    assert [float(o[0, 0]) for o in outputs] == ([5.0 * k for k in range(8)] + [12.0 * k for k in range(8)]
                                                 + [length * k for k, length in enumerate(MIXED_LENGTHS)])
    calls = [(rows, length) for (rows, _), length in zip(batcher.engine.calls, engine.lengths, strict=True)]
    assert max(rows for rows, length in calls if length > 8) <= 4, calls  # (a batch is padded to its longest)
    assert max(rows for rows, length in calls if length <= 8) > 4, calls


def test_with_measuring_off_batches_grow_to_max_batch_size():
    batcher = asyncio.run(warmed_up(CurveEngine({2: RISING_PAST_4}), measure=False))
    assert batcher.limits == BatchLimits.fixed(8)


WAIT_FOR_LOCK = """
import time
from service.batch_limit import machine_to_itself
started = time.monotonic()
with machine_to_itself(wait_s=0.5):
    print(round(time.monotonic() - started, 2))
"""


def test_warm_ups_on_one_machine_take_turns(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # a lock of this test's own

    def other_warm_up() -> float:
        env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONPATH": str(REPO)}
        done = subprocess.run([sys.executable, "-c", WAIT_FOR_LOCK], env=env, capture_output=True, text=True,
                              timeout=60, check=True)
        return float(done.stdout)

    with machine_to_itself():
        assert other_warm_up() >= 0.5  # it waited its whole allowance, then went ahead rather than hang
    assert other_warm_up() < 0.5  # free again once the holder is done
