"""What an engine call will cost, predicted from the recent calls of its own size, device and input width.

The batcher needs the prediction twice: to run a call on the event loop when it is cheaper than the hop to a
worker thread, and to refuse (503) a large request that would miss max_latency_ms. It used one moving
average of seconds per row, and a call's cost is far from proportional to its rows. Measured on the 2-core
machine (ONNX Runtime, one thread, fastest of 30 calls):

- regression: 5 us at 1 row, 8 us at 64. After single-row traffic the average priced 64 rows at 320 us,
  40 times what they cost; after bulk traffic it priced one row at 0.13 us.
- default transformer: 50 us at 1 row of 8 tokens, 96 us at 1 row of 32 tokens, 4.2 ms at 64 rows of 32.
  After 32-token traffic the average priced 8 rows of 8 tokens (165 us) at 770 us, and so sent them through
  the 80-140 us hop to a thread.
- on a GPU with the CPU twin (engines.SmallBatchesOnCpu) one average mixed two devices: one row on the CPU
  0.1 ms, 64 rows on CUDA 0.4 ms. A bulk request on CUDA was priced at CPU rates, up to 16 times too dear.

So costs are kept per device, per band of input widths (1, 2-3, 4-7, ... tokens: feature batches all have one
width) and per band of rows (1, 2-3, 4-7, ...), each as a moving average of seconds per element (row x
token, or row x feature) that scales a call within its bands. Warm-up runs every band up to max_batch_size,
and no engine call is larger (requests above it are split), so after warm-up every call has its own band's
price: the recent calls of its size where traffic has them, warm-up's measurement (taken with the machine to
itself) where it has not. A straight line (a floor per call plus a cost per element) fitted on the recent
calls was tried first: single rows with a 1 ms scheduler pause in one call of 20 dragged its slope, once
warm-up's calls had faded, until 64 rows were priced at up to 1.4x their cost (2.0x without OUTLIER).
"""

import numpy as np

FORGET = 0.9
"""Weight a band's running cost keeps at each new call: it follows about the last 10 calls of that band."""

FIRST_CALLS = 3
"""A band's first calls set its cost by their fastest: the first call of a shape pays for allocations."""

OUTLIER = 2.0
"""A call counts as at most this many times its band's running cost: a call the scheduler paused for a
millisecond says nothing about the engine. A machine that really got slower is followed within a few dozen
calls."""


class EngineCost:
    """Predicted seconds of an engine call on a batch, learned from the calls `observe` is told about."""

    def __init__(self) -> None:
        self._bands: dict[tuple[str, int, int], list] = {}  # (device, width band, rows band) -> [s per element, calls]

    @staticmethod
    def _key(device: str, batch: np.ndarray) -> tuple[str, int, int]:
        width = batch.shape[1] if batch.ndim > 1 else 1
        return device, width.bit_length(), batch.shape[0].bit_length()

    def observe(self, device: str, batch: np.ndarray, seconds: float) -> None:
        key = self._key(device, batch)
        per_element = seconds / batch.size
        band = self._bands.get(key)
        if band is None:
            self._bands[key] = [per_element, 1]
        elif band[1] < FIRST_CALLS:
            band[0], band[1] = min(band[0], per_element), band[1] + 1
        else:
            band[0] += (1.0 - FORGET) * (min(per_element, OUTLIER * band[0]) - band[0])

    def seconds(self, device: str, batch: np.ndarray) -> float:
        """The predicted cost; 0.0 before any call on that device (nothing known yet: treated as cheap)."""
        key = self._key(device, batch)
        band = self._bands.get(key)
        if band is None:  # a size or width no call has had yet: the nearest band the device has run
            _, width, rows = key
            known = [k for k in self._bands if k[0] == device]
            if not known:
                return 0.0
            band = self._bands[min(known, key=lambda k: (abs(k[1] - width), abs(k[2] - rows)))]
        return band[0] * batch.size
