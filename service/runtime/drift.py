"""Instances outside what the model was trained on, counted per feature so that drift shows in /metrics.

Far outside its training data a model answers with confident extrapolation; refusing would break clients whose
data legitimately moved, so an operator sees it instead. Per engine call: features beyond the training split's min
or max (from the manifest), against the instances served, and an alert on the share. Token models: sequences
shorter or longer than in training (`length`), and those holding an id never seen there (`unseen_token`).
"""

import numpy as np

from service import metrics


class TrainingRange:
    def __init__(self, model: str, names: tuple[str, ...], low: list[float], high: list[float]) -> None:
        if not len(names) == len(low) == len(high):
            raise ValueError(f"training_range has {len(low)} minima and {len(high)} maxima for {len(names)} features")
        self.low = np.array(low, dtype=np.float32)  # (F,)
        self.high = np.array(high, dtype=np.float32)  # (F,)
        self._counters = [metrics.INPUTS_OUTSIDE_TRAINING_RANGE.labels(model=model, feature=n) for n in names]

    @classmethod
    def from_manifest(cls, model: str, names: tuple[str, ...], manifest: dict) -> "TrainingRange | None":
        spec = manifest["inputs"][0].get("training_range")
        return None if spec is None else cls(model, names, spec["min"], spec["max"])

    def observe(self, batch: np.ndarray) -> None:
        """Count this engine call's (N, F) float32 instances outside the range, per feature."""
        outside = (batch < self.low) | (batch > self.high)  # (N, F)
        if np.count_nonzero(outside):  # a third of .any()'s cost on a single row
            for feature in np.flatnonzero(outside.any(axis=0)):
                self._counters[feature].inc(int(outside[:, feature].sum()))


class TokenTrainingRange:
    """What token sequences looked like in the training split, as two features: `length`, the shortest and longest
    sequence (tokens other than padding), and `unseen_token`, instances holding an id that never occurs there."""

    def __init__(self, model: str, shortest: int, longest: int, pad_id: int, vocab_size: int,
                 seen: list[int] | None = None) -> None:
        self.shortest, self.longest, self.pad_id = shortest, longest, pad_id
        self._length = metrics.INPUTS_OUTSIDE_TRAINING_RANGE.labels(model=model, feature="length")
        self.unseen = None  # (V,) True for ids absent from training; None: a manifest without the list
        if seen is not None:
            if any(not 0 <= i < vocab_size for i in seen):
                raise ValueError(f"training_tokens holds ids outside the vocabulary of {vocab_size}")
            self.unseen = np.ones(vocab_size, dtype=bool)
            self.unseen[seen] = False
            self.unseen[pad_id] = False
            self._unseen_token = metrics.INPUTS_OUTSIDE_TRAINING_RANGE.labels(model=model, feature="unseen_token")

    @classmethod
    def from_manifest(cls, model: str, manifest: dict) -> "TokenTrainingRange | None":
        spec = manifest["inputs"][0]
        lengths = spec.get("training_lengths")
        if lengths is None:
            return None
        return cls(model, lengths["min"], lengths["max"], spec["pad_id"], spec["vocab_size"],
                   spec.get("training_tokens"))

    def observe(self, ids: np.ndarray) -> None:
        """Count this engine call's (N, L) int64 padded sequences shorter or longer than in training, and those
        holding an unseen id. Ids are in the vocabulary (the parser refuses others). Integer bounds, not float32
        arrays as for features: the mixed-type comparison cost a single row 2 us more."""
        lengths = (ids != self.pad_id).sum(axis=1)  # (N,)
        outside = np.count_nonzero((lengths < self.shortest) | (lengths > self.longest))
        if outside:
            self._length.inc(outside)
        if self.unseen is not None:
            holding = np.count_nonzero(self.unseen[ids].any(axis=1))  # (N, L) -> instances with an unseen id
            if holding:
                self._unseen_token.inc(holding)
