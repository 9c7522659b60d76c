"""How many rows to merge into one engine call: measured from the engine at warm-up, not assumed.

Merging requests pays only while a bigger engine call costs less per row. On a GPU, and for the default
models on a CPU, it does all the way to max_batch_size. A model that keeps a CPU core busy with one row
gets no cheaper per row, and past a few rows dearer, once a batch's activations outgrow the cache. The
heavy benchmark transformer (d_model 256, 4 layers, 128 tokens, ONNX Runtime on one thread) costs
10.9 ms per row at batch 1, 10.3 at 4, 10.5 at 8 and 11.8-12.5 at 32-64. Side by side at c=64 it served
156 rows/s merging up to 64 rows, 177 up to 8, and 167 with batching off. So warm-up times the engine at
each batch size, and the batcher merges no more rows than the largest size whose cost per row (with the
stack's cost per call shared among the rows) is within TOLERANCE of the cheapest.

For token models the curve depends on the (padded) length: the default transformer's cost per row keeps
falling to batch 32-64 at 32 tokens, but is flat from 4 rows at 64 tokens, where attention dominates. So
each length bucket gets its own limit, and a batch takes the smallest limit among its requests' lengths.
"""

import fcntl
import logging
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

log = logging.getLogger("modelserve")

TOLERANCE = 0.05
"""Slack over the cheapest cost per row. The fastest of a few calls still moves by a few per cent on a busy
machine, and a flat curve should not lose its larger batches to that noise."""

CALL_OVERHEAD_S = 100e-6
"""What the serving stack adds per engine call whatever its size: a call big enough to leave the event loop
costs a thread hop and back (80-140 us, measured), plus dispatch. Counting it keeps a noisy curve from
cutting batches that pay for it: measured on a busy machine, the default transformer at 32 tokens cost
118 us per row at 4 rows, 122 at 8, 132 at 16, 129 at 32 and 158 at 64; by the engine alone the limit
would be 8, with the call counted it is 32."""

REPEATS = 3
"""Timed calls per batch size; the fastest counts (the others met a busy machine, not a dearer batch)."""


def cost_per_row(run: Callable[[np.ndarray], object], batches: list[np.ndarray],
                 repeats: int = REPEATS) -> dict[int, float]:
    """Batch size -> seconds per row of the fastest of `repeats` calls of `run` on that batch.

    The sizes take turns, so a passing disturbance slows one call of several sizes rather than every call
    of one. The batches' shapes must have been run once already: a first call pays for allocations."""
    fastest = {batch.shape[0]: float("inf") for batch in batches}
    for _ in range(repeats):
        for batch in batches:
            started = time.perf_counter()
            run(batch)
            fastest[batch.shape[0]] = min(fastest[batch.shape[0]], time.perf_counter() - started)
    return {size: seconds / size for size, seconds in fastest.items()}


@contextmanager
def machine_to_itself(wait_s: float = 300.0):
    """Hold the machine's warm-up lock: workers (and servers) on one machine warm up one at a time.

    Measured while the other worker warmed up the heavy transformer, the default transformer's cost per
    row turned upwards at 8 rows (145 us at 16, 157 at 64, against 97 and 98 alone) and its batches would
    have been cut to 8. Alone, each measures its engine and nothing else. The kernel drops the lock when
    its holder exits; past `wait_s` a worker measures anyway rather than never becoming ready."""
    path = Path(tempfile.gettempdir()) / "modelserve-warm-up.lock"
    try:
        handle = open(path, "a")
    except OSError as exc:
        log.warning("cannot open %s (%s); measuring without waiting for other warm-ups", path, exc)
        yield
        return
    with handle:
        if not _lock_within(handle, wait_s):
            log.warning("another warm-up held %s for %.0f s; measuring alongside it", path, wait_s)
        yield  # (closing the file drops the lock)


def _lock_within(handle, wait_s: float) -> bool:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)


def efficient_batch_limit(costs: dict[int, float], tolerance: float = TOLERANCE,
                          call_overhead_s: float = CALL_OVERHEAD_S) -> int:
    """The largest batch size whose cost per row (seconds), with the per-call overhead shared among its
    rows, is within `tolerance` of the cheapest."""
    served = {size: cost + call_overhead_s / size for size, cost in costs.items()}
    cheapest = min(served.values())
    return max(size for size, cost in served.items() if cost <= cheapest * (1 + tolerance))


def rows_faster_on_cpu(cpu_run: Callable[[np.ndarray], object], gpu_run: Callable[[np.ndarray], object],
                       batches: list[np.ndarray], repeats: int = REPEATS) -> int:
    """The largest batch size up to which every size ran faster on the CPU (`cpu_run`) than on the GPU; 0 when
    the smallest did not. Sizes are timed in ascending order and timing stops at the first the GPU wins: the
    CPU's larger batches take long and could only be slower still. `gpu_run` must have seen these shapes;
    each is run once on the CPU before it is timed (a first call pays for allocations)."""
    rows = 0
    for batch in sorted(batches, key=lambda b: b.shape[0]):
        size = batch.shape[0]
        cpu_run(batch)
        on_cpu = cost_per_row(cpu_run, [batch], repeats)[size]
        on_gpu = cost_per_row(gpu_run, [batch], repeats)[size]
        if on_cpu >= on_gpu:
            break
        rows = size
    return rows


def describe(costs: dict[int, float]) -> str:
    """'1: 10.9 ms, 2: 10.6 ms, ...' per row, for the log."""
    return ", ".join(f"{size}: {cost * 1e3:.3g} ms" for size, cost in sorted(costs.items()))


ANY_LENGTH = 0
"""The one key of a feature model's limits: its cost does not depend on an input length."""


@dataclass(frozen=True)
class BatchLimits:
    """Most rows per engine call, by input length: {longest length of a bucket: rows}, or {ANY_LENGTH: rows}."""

    by_length: dict[int, int]

    @classmethod
    def fixed(cls, rows: int) -> "BatchLimits":
        return cls({ANY_LENGTH: rows})

    @property
    def fixed_rows(self) -> int | None:
        """The one limit of a feature model; None when it depends on the length."""
        return self.by_length.get(ANY_LENGTH)

    def rows_for(self, batch: np.ndarray) -> int:
        """The limit for a batch of this (B, F) or (B, L) array: that of the shortest bucket that holds L."""
        if ANY_LENGTH in self.by_length:
            return self.by_length[ANY_LENGTH]
        length = batch.shape[1]
        for longest, rows in self.by_length.items():  # (ascending)
            if length <= longest:
                return rows
        return self.by_length[max(self.by_length)]  # (the validator refuses longer input before it gets here)
