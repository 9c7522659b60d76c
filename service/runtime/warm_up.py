"""Before a model takes traffic: every batch shape it will meet run once (a first call pays for allocations, on
CUDA for kernel selection), the cost model fed, bursts sent through the batcher, and on CUDA the batch sizes the
CPU twin runs faster measured (runtime/engines.py, SmallBatchesOnCpu)."""

import asyncio
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import numpy as np
from filelock import FileLock, Timeout

from service.runtime.engines import SmallBatchesOnCpu

log = logging.getLogger("modelserve")

REPEATS = 3  # timed calls per batch size; the fastest counts (the others met a busy machine, not a dearer batch)
LOCK_WAIT_S = 300.0  # then a worker measures alongside another rather than never be ready


def batch_sizes(max_batch_size: int) -> list[int]:
    return sorted({1 << k for k in range(max_batch_size.bit_length()) if 1 << k <= max_batch_size} | {max_batch_size})


def seconds_per_row(run: Callable[[np.ndarray], object], batch: np.ndarray, repeats: int = REPEATS) -> float:
    """Seconds per row of the fastest of `repeats` calls of `run` on `batch`."""
    fastest = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run(batch)
        fastest = min(fastest, time.perf_counter() - started)
    return fastest / batch.shape[0]


def rows_faster_on_cpu(cpu_run: Callable[[np.ndarray], object], gpu_run: Callable[[np.ndarray], object],
                       batches: list[np.ndarray], repeats: int = REPEATS) -> int:
    """The largest batch size up to which every size ran faster on the CPU than on the GPU; 0 when the smallest did
    not. Timing stops at the first size the GPU wins: the CPU's larger batches could only be slower still."""
    rows = 0
    for batch in sorted(batches, key=lambda b: b.shape[0]):
        cpu_run(batch)  # (a first call pays for allocations; `gpu_run` has seen these shapes)
        if seconds_per_row(cpu_run, batch, repeats) >= seconds_per_row(gpu_run, batch, repeats):
            break
        rows = batch.shape[0]
    return rows


def measure_cpu_rows(name: str, engine, batches: list[np.ndarray]) -> dict[int, int]:
    """By batch width, ascending, the largest batch the CPU twin runs faster than CUDA. Workers on one machine
    measure one at a time (a file lock): alongside another worker's measuring, the CPU looked slower than it is."""
    by_width: dict[int, list[np.ndarray]] = {}
    for batch in batches:
        by_width.setdefault(batch.shape[1], []).append(batch)
    lock = FileLock(Path(tempfile.gettempdir()) / "modelserve-warm-up.lock")
    try:
        lock.acquire(timeout=LOCK_WAIT_S)
    except Timeout:
        log.warning("another warm-up held %s for %.0f s; measuring alongside it", lock.lock_file, LOCK_WAIT_S)
    try:
        rows = {width: rows_faster_on_cpu(engine.cpu.run, engine.gpu.run, same) for width, same in
                sorted(by_width.items())}
    finally:
        lock.release(force=True)
    log.info("%s: by batch width, batches of up to %s rows run on the CPU, faster there than on %s", name,
             rows, engine.device)
    return rows


async def warm_up(model) -> None:
    """Warm `model` (a runtime.registry.ServedModel) up; its batcher records metrics from then on."""
    batcher, schema = model.batcher, model.schema
    examples = [batch for rows in batch_sizes(batcher.max_rows) for batch in schema.examples(rows)]

    def run_every_shape() -> None:  # in a thread: a new version warms up while the loop serves the old one
        for batch in examples:
            batcher.run_now(batch)
        if isinstance(batcher.engine, SmallBatchesOnCpu):
            batcher.engine.cpu_rows = measure_cpu_rows(model.name, batcher.engine, examples)

    await anyio.to_thread.run_sync(run_every_shape)
    one = schema.examples(1)[0]
    for concurrent in (1, 2, 4, 8, 16, 1, 2, 4, 8, 16):
        await asyncio.gather(*(batcher.infer(one) for _ in range(concurrent)))
