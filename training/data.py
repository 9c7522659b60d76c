"""Datasets: what every dataset holds, and three built-in ones so the job runs with no data (user files:
training/tables.py).

Every dataset comes out as tensors plus the names the service needs (features, targets, classes). A tabular row
holds one float per column (models/columns.py): a number (NaN where the cell is empty) or a category's code.
"""

from dataclasses import dataclass, replace

import numpy as np
import torch

from models import ByteTokenizer
from models.columns import NUMERIC, Column
from training.errors import DataError

# price (thousands) = intercept + area_m2 * a + age_years * b + noise; the tests recover these.
HOUSING_COEFFICIENTS = {"intercept": 50.0, "area_m2": 2.5, "age_years": -1.2}
HOUSING_NOISE_STD = 10.0

# zigzag: a piecewise-linear function through these knots.
ZIGZAG_KNOTS_X = (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0)
ZIGZAG_KNOTS_Y = (0.0, 1.0, -1.0, 1.0, -1.0, 1.0, 0.0)


@dataclass
class Dataset:
    source: str
    """'builtin:NAME' or the file path."""
    task: str
    """'regression', 'binary' or 'multiclass'."""
    inputs: torch.Tensor
    """(N, F) float32 feature rows, or (N, L) int64 token ids right-padded with 0."""
    targets: torch.Tensor
    """(N, T) float32 for regression, (N,) int64 class indices for classification."""
    feature_names: list[str]
    target_names: list[str]
    class_names: list[str] | None = None
    columns: list[Column] | None = None
    """Tabular data: what each input column is (None: token sequences)."""
    dropped_rows: int = 0
    """Rows left out because their target was empty."""
    dropped_rows_without_text: int = 0
    """Token data: rows left out because their text was empty (a model cannot read nothing; the service refuses it)."""
    truncated_texts: int | None = None
    """A user's texts: how many were longer than max_len and keep their first max_len byte tokens, as the service
    reads such a model's texts. None for the built-in sequences, which the service refuses past max_len."""
    unnamed_columns: tuple[str, ...] = ()
    """Columns with no name in the header, left out of the default features (a row index, as pandas writes one)."""
    encoding: str = "UTF-8"
    """The CSV's text encoding: UTF-8, or Windows-1252 where it was not UTF-8."""

    def __len__(self) -> int:
        return len(self.inputs)

    @property
    def n_outputs(self) -> int:
        return len(self.class_names) if self.class_names else self.targets.shape[1]

    def subset(self, index: torch.Tensor) -> "Dataset":
        return replace(self, inputs=self.inputs[index], targets=self.targets[index])

    def split(self, val_fraction: float, seed: int) -> tuple["Dataset", "Dataset"]:
        """Seeded random train/validation split."""
        n = len(self)
        n_val = max(2, int(round(n * val_fraction)))
        if n - n_val < 2:
            raise DataError(f"{self.source}: {n} rows are too few for a train/validation split")
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        return self.subset(order[n_val:]), self.subset(order[:n_val])

    def merged(self, other: "Dataset") -> "Dataset":
        """These rows followed by `other`'s (the refit on all training rows)."""
        return replace(self, inputs=torch.cat([self.inputs, other.inputs]),
                       targets=torch.cat([self.targets, other.targets]))


# ---------------------------------------------------------------- built-in data

def housing(n: int = 2000, seed: int = 0) -> Dataset:
    """House price in thousands from floor area (m²) and age (years): linear with known coefficients."""
    rng = np.random.default_rng(seed)
    area = rng.uniform(40.0, 250.0, n)
    age = rng.uniform(0.0, 60.0, n)
    c = HOUSING_COEFFICIENTS
    price = c["intercept"] + c["area_m2"] * area + c["age_years"] * age + rng.normal(0.0, HOUSING_NOISE_STD, n)
    features = torch.tensor(np.stack([area, age], axis=1), dtype=torch.float32)  # (N, 2)
    targets = torch.tensor(price, dtype=torch.float32).unsqueeze(1)  # (N, 1)
    return Dataset("builtin:housing", "regression", features, targets, ["area_m2", "age_years"], ["price_k"],
                   columns=[Column("area_m2", NUMERIC), Column("age_years", NUMERIC)])


def zigzag(n: int = 4000, seed: int = 0) -> Dataset:
    """A piecewise-linear 1-D target (six straight segments) that a linear model cannot fit."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(ZIGZAG_KNOTS_X[0], ZIGZAG_KNOTS_X[-1], n)
    y = np.interp(x, ZIGZAG_KNOTS_X, ZIGZAG_KNOTS_Y) + rng.normal(0.0, 0.02, n)
    return Dataset("builtin:zigzag", "regression", torch.tensor(x, dtype=torch.float32).unsqueeze(1),
                   torch.tensor(y, dtype=torch.float32).unsqueeze(1), ["x"], ["y"], columns=[Column("x", NUMERIC)])


def order_task(n: int = 4000, seed: int = 0, min_len: int = 4, max_len: int = 32) -> Dataset:
    """Byte-token sequences holding exactly one 'a' and one 'b' among filler letters c..z.

    Label: does 'a' come before 'b'? Both classes hold the same multiset of tokens, so a model
    blind to order (bag of tokens) is at chance; one that compares positions (attention over
    learned positions) can solve it. Sequences are plain text, so the served model answers
    strings like "xqazzbk" too.
    """
    rng = np.random.default_rng(seed)
    tokenizer = ByteTokenizer()
    fillers = np.array(tokenizer.encode("cdefghijklmnopqrstuvwxyz"))
    a_id, b_id = tokenizer.encode("ab")
    ids = np.zeros((n, max_len), dtype=np.int64)  # (N, L), 0 = padding
    labels = np.zeros(n, dtype=np.int64)
    for i in range(n):
        length = rng.integers(min_len, max_len + 1)
        ids[i, :length] = rng.choice(fillers, size=length)
        pos_a, pos_b = rng.choice(length, size=2, replace=False)
        ids[i, pos_a], ids[i, pos_b] = a_id, b_id
        labels[i] = int(pos_a < pos_b)
    return Dataset("builtin:order", "binary", torch.tensor(ids), torch.tensor(labels),
                   ["text"], ["a_before_b"], ["b_first", "a_first"])


BUILTIN = {"housing": housing, "zigzag": zigzag, "order": order_task}
