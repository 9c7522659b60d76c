"""Tabular preparation inside the graph: imputation, scaling, was-missing indicators and one-hot categories.

Exported with the model, so a served model takes raw rows (numbers, NaN for a gap, category codes) and nothing about
a column's preparation lives in client code. Fitted on the training rows only (`fit`).
"""

import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn


@dataclass
class TabularInputs:
    """The raw row a tabular model takes: base of the regression and MLP configs."""

    n_features: int = 1
    """Columns F of the raw row, numeric and categorical, in training order."""
    categorical: tuple[int, ...] = field(default=())
    """Positions of the categorical columns in the row; each carries a category code (0: missing or unseen)."""
    cardinalities: tuple[int, ...] = field(default=())
    """Vocabulary size of each categorical column, in the order of `categorical` (codes run 0..size)."""
    missing_indicators: tuple[int, ...] = field(default=())
    """Positions of the numeric columns that get a 0/1 'was missing' input (those with gaps in training)."""

    def input_problems(self) -> list[str]:
        self.categorical, self.cardinalities = tuple(self.categorical), tuple(self.cardinalities)
        self.missing_indicators = tuple(self.missing_indicators)
        problems = []
        if self.n_features < 1:
            problems.append(f"n_features must be >= 1, got {self.n_features}")
        positions = {"categorical": self.categorical, "missing_indicators": self.missing_indicators}
        for name, values in positions.items():
            if any(not 0 <= p < self.n_features for p in values) or len(set(values)) != len(values):
                problems.append(f"{name} must be distinct column positions below n_features ({self.n_features}), "
                                f"got {list(values)}")
        if set(self.categorical) & set(self.missing_indicators):
            problems.append("a column cannot be both categorical and have a missing indicator (categories have a "
                            "missing slot)")
        if len(self.cardinalities) != len(self.categorical) or any(k < 1 for k in self.cardinalities):
            problems.append(f"cardinalities must hold one size >= 1 per categorical column, got "
                            f"{list(self.cardinalities)} for {len(self.categorical)} column(s)")
        return problems


class ColumnEncoder(nn.Module):
    """Raw rows (B, F) -> model inputs (B, width): [standardised numeric | was-missing 0/1 | one-hot categories].

    A missing numeric value (NaN) becomes the training median before scaling; a categorical column becomes
    cardinality + 1 one-hot slots, slot 0 for a missing or unseen category. Until `fit`, numeric columns pass
    unscaled with a fill of 0.
    """

    def __init__(self, inputs: TabularInputs) -> None:
        super().__init__()
        numeric = [j for j in range(inputs.n_features) if j not in inputs.categorical]
        slot_column = [j for j, k in zip(inputs.categorical, inputs.cardinalities) for _ in range(k + 1)]
        slot_code = [float(code) for k in inputs.cardinalities for code in range(k + 1)]
        self.register_buffer("numeric_index", torch.tensor(numeric, dtype=torch.long))  # (Fn,)
        self.register_buffer("indicator_index", torch.tensor(list(inputs.missing_indicators), dtype=torch.long))
        self.register_buffer("slot_column", torch.tensor(slot_column, dtype=torch.long))  # (S,)
        self.register_buffer("slot_code", torch.tensor(slot_code))  # (S,)
        self.register_buffer("fill", torch.zeros(len(numeric)))  # (Fn,)
        self.register_buffer("mean", torch.zeros(len(numeric)))  # (Fn,)
        self.register_buffer("std", torch.ones(len(numeric)))  # (Fn,)
        # Python ints, not tensors: which blocks exist is fixed per model, so the exported graph has no branches.
        self.n_numeric, self.n_indicators, self.n_slots = len(numeric), len(inputs.missing_indicators), len(slot_code)
        self.width = self.n_numeric + self.n_indicators + self.n_slots

    def fit(self, rows: torch.Tensor) -> None:
        """Medians, means and standard deviations of the numeric columns over training rows (N, F), gaps ignored.
        A column with no value at all keeps a fill of 0; a constant one keeps std 1."""
        numeric = rows[:, self.numeric_index].double().numpy()  # (N, Fn)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # (an all-NaN column: handled on the next line)
            median = np.nan_to_num(np.nanmedian(numeric, axis=0), nan=0.0)  # (Fn,) as sklearn's median imputer
        filled = np.where(np.isnan(numeric), median, numeric)
        std = filled.std(axis=0)
        self.fill.copy_(torch.from_numpy(median))
        self.mean.copy_(torch.from_numpy(filled.mean(axis=0)))
        self.std.copy_(torch.from_numpy(np.where(std > 1e-12, std, 1.0)))

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        parts = []
        if self.n_numeric > 0:
            numeric = rows.index_select(1, self.numeric_index)  # (B, Fn)
            filled = torch.where(torch.isnan(numeric), self.fill.to(rows.dtype), numeric)  # (B, Fn)
            parts.append((filled - self.mean) / self.std)  # (B, Fn)
        if self.n_indicators > 0:
            parts.append(torch.isnan(rows.index_select(1, self.indicator_index)).to(rows.dtype))  # (B, Fm)
        if self.n_slots > 0:
            codes = rows.index_select(1, self.slot_column)  # (B, S): each slot sees its column's code
            codes = torch.where(torch.isnan(codes), torch.zeros_like(codes), codes)  # a NaN code is a missing one
            parts.append((codes == self.slot_code).to(rows.dtype))  # (B, S) one-hot per column
        return torch.cat(parts, dim=1)  # (B, width)
