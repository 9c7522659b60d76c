"""What an engine call will cost, predicted from the recent calls of its own device, input width and size: the one
latency model, for running a call inline, for shedding (503) and for client deadlines (504).

A call's cost is far from proportional to its rows (regression: 5 us at 1 row, 8 us at 64), so costs are kept per
device, per band of widths (1, 2-3, 4-7, ... tokens or features) and per band of rows, each a moving average of
seconds per element. Warm-up runs every band up to max_batch_size, and no call is larger.
"""

FORGET = 0.9  # weight a band's cost keeps at each call: it follows about its last 10 calls
FIRST_CALLS = 3  # a band's first calls count by their fastest: the first call of a shape pays for allocations
OUTLIER = 2.0  # a call counts as at most this many times its band's cost: one the scheduler paused says nothing


class EngineCost:
    """Predicted seconds of an engine call on a batch of a given (rows, width) shape."""

    def __init__(self) -> None:
        self._bands: dict[tuple[str, int, int], list] = {}  # (device, width band, rows band) -> [s per element, calls]

    @staticmethod
    def _key(device: str, shape: tuple[int, ...]) -> tuple[str, int, int]:
        width = shape[1] if len(shape) > 1 else 1
        return device, width.bit_length(), shape[0].bit_length()

    def observe(self, device: str, shape: tuple[int, ...], seconds: float) -> None:
        key = self._key(device, shape)
        per_element = seconds / max(1, shape[0] * (shape[1] if len(shape) > 1 else 1))
        band = self._bands.get(key)
        if band is None:
            self._bands[key] = [per_element, 1]
        elif band[1] < FIRST_CALLS:
            band[0], band[1] = min(band[0], per_element), band[1] + 1
        else:
            band[0] += (1.0 - FORGET) * (min(per_element, OUTLIER * band[0]) - band[0])

    def seconds(self, device: str, shape: tuple[int, ...]) -> float:
        """The predicted cost; 0.0 before any call on that device (nothing known yet: treated as cheap)."""
        key = self._key(device, shape)
        band = self._bands.get(key)
        if band is None:  # a size or width no call has had yet: the nearest band the device has run
            _, width, rows = key
            known = [k for k in self._bands if k[0] == device]
            if not known:
                return 0.0
            band = self._bands[min(known, key=lambda k: (abs(k[1] - width), abs(k[2] - rows)))]
        return band[0] * shape[0] * (shape[1] if len(shape) > 1 else 1)
