"""Datasets: three built-in ones so the job runs with no data, and user CSV/Parquet files.

Every dataset comes out as tensors plus the names the service needs (features, targets, classes).
Problems in user data raise DataError with one line naming the file, column and row.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from models import ByteTokenizer
from training.errors import DataError

MIN_ROWS = 10  # below this a train/validation split says nothing

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

    def __len__(self) -> int:
        return len(self.inputs)

    @property
    def n_outputs(self) -> int:
        return len(self.class_names) if self.class_names else self.targets.shape[1]

    def subset(self, index: torch.Tensor) -> "Dataset":
        return Dataset(self.source, self.task, self.inputs[index], self.targets[index],
                       self.feature_names, self.target_names, self.class_names)

    def split(self, val_fraction: float, seed: int) -> tuple["Dataset", "Dataset"]:
        """Seeded random train/validation split."""
        n = len(self)
        n_val = max(2, int(round(n * val_fraction)))
        if n - n_val < 2:
            raise DataError(f"{self.source}: {n} rows are too few for a train/validation split")
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        return self.subset(order[n_val:]), self.subset(order[:n_val])


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
    return Dataset("builtin:housing", "regression", features, targets, ["area_m2", "age_years"], ["price_k"])


def zigzag(n: int = 4000, seed: int = 0) -> Dataset:
    """A piecewise-linear 1-D target (six straight segments) that a linear model cannot fit."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(ZIGZAG_KNOTS_X[0], ZIGZAG_KNOTS_X[-1], n)
    y = np.interp(x, ZIGZAG_KNOTS_X, ZIGZAG_KNOTS_Y) + rng.normal(0.0, 0.02, n)
    return Dataset("builtin:zigzag", "regression", torch.tensor(x, dtype=torch.float32).unsqueeze(1),
                   torch.tensor(y, dtype=torch.float32).unsqueeze(1), ["x"], ["y"])


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


# ---------------------------------------------------------------- user data

def _read_table(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a .csv or .parquet file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            frame = pd.read_csv(path, skipinitialspace=True)
        elif suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            raise DataError(f"{path}: unsupported file type {suffix!r}; use .csv or .parquet")
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path}: cannot be read as {suffix[1:]}: {str(exc).splitlines()[0]}") from None
    if len(frame) == 0:
        raise DataError(f"{path}: file has a header but no data rows")
    return frame


def _where(path: Path, column: str, row: int) -> str:
    """'file: column 'x', row 7 (line 8)': row is the 1-based data row; line counts the CSV header."""
    line = f" (line {row + 1})" if path.suffix.lower() == ".csv" else ""
    return f"{path}: column {column!r}, row {row}{line}"


def _numeric_column(path: Path, frame: pd.DataFrame, column: str) -> np.ndarray:
    raw = frame[column]
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
    for i in np.flatnonzero(~np.isfinite(values)):
        original = raw.iloc[i]
        if pd.isna(original):
            raise DataError(f"{_where(path, column, i + 1)}: missing value (NaN)")
        if isinstance(original, str) and pd.isna(pd.to_numeric(original, errors="coerce")):
            raise DataError(f"{_where(path, column, i + 1)}: {original!r} is not a number")
        raise DataError(f"{_where(path, column, i + 1)}: {str(original)!r} is not a finite number")
    # Finite in float64 but inf in the float32 that training and serving compute in: say so here, rather than
    # train on inf and fail later with a NaN somewhere else.
    beyond = np.flatnonzero(np.abs(values) > np.finfo(np.float32).max)
    if beyond.size:
        i = int(beyond[0])
        raise DataError(f"{_where(path, column, i + 1)}: {str(raw.iloc[i])!r} is beyond float32's range (±3.4e38), "
                        "which training and serving compute in")
    return values


def _class_labels(path: Path, frame: pd.DataFrame, column: str, task: str) -> tuple[np.ndarray, list[str]]:
    raw = frame[column]
    missing = np.flatnonzero(raw.isna().to_numpy())
    if len(missing):
        raise DataError(f"{_where(path, column, missing[0] + 1)}: missing class label")
    names = sorted({str(v) for v in raw})
    if len(names) < 2:
        raise DataError(f"{path}: column {column!r} holds a single class {names}; classification needs two or more")
    if task == "binary" and len(names) != 2:
        raise DataError(f"{path}: --task binary needs exactly 2 classes in {column!r}, "
                        f"found {len(names)}: {names[:10]}")
    index = {name: i for i, name in enumerate(names)}
    return np.array([index[str(v)] for v in raw], dtype=np.int64), names


def _token_column(path: Path, frame: pd.DataFrame, column: str, max_len: int) -> np.ndarray:
    tokenizer = ByteTokenizer()
    ids = np.zeros((len(frame), max_len), dtype=np.int64)  # (N, L), 0 = padding
    for i, text in enumerate(frame[column]):
        if pd.isna(text) or str(text) == "":
            raise DataError(f"{_where(path, column, i + 1)}: empty text")
        tokens = tokenizer.encode(str(text))
        if len(tokens) > max_len:
            raise DataError(f"{_where(path, column, i + 1)}: text is {len(tokens)} byte tokens, "
                            f"longer than max_len {max_len}")
        ids[i, : len(tokens)] = tokens
    return ids


def load_table(path: Path, target: str, features: list[str] | None, task: str, input_kind: str,
               max_len: int = 64) -> Dataset:
    """Load a user CSV/Parquet file. input_kind 'features' wants numeric columns; 'tokens' one text column."""
    path = Path(path)
    frame = _read_table(path)
    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    if target not in columns:
        raise DataError(f"{path}: target column {target!r} not found; columns are {columns}")
    features = features or [c for c in columns if c != target]
    unknown = [f for f in features if f not in columns]
    if unknown:
        raise DataError(f"{path}: feature column(s) {unknown} not found; columns are {columns}")
    if target in features:
        raise DataError(f"{path}: column {target!r} is both the target and a feature")
    repeated = sorted({f for f in features if features.count(f) > 1})
    if repeated:  # (the service takes rows keyed by feature name: a name twice would be two inputs under one key)
        raise DataError(f"{path}: feature column(s) {repeated} named more than once in the features")
    if not features:
        raise DataError(f"{path}: no feature columns besides the target {target!r}")
    if len(frame) < MIN_ROWS:
        raise DataError(f"{path}: {len(frame)} data rows; a train/validation split needs at least {MIN_ROWS}")

    if input_kind == "tokens":
        if len(features) != 1:
            raise DataError(f"{path}: the transformer reads one text column; got features {features}")
        inputs = torch.tensor(_token_column(path, frame, features[0], max_len))
    else:
        matrix = np.stack([_numeric_column(path, frame, c) for c in features], axis=1)  # (N, F)
        inputs = torch.tensor(matrix, dtype=torch.float32)

    if task == "regression":
        y = torch.tensor(_numeric_column(path, frame, target), dtype=torch.float32).unsqueeze(1)  # (N, 1)
        return Dataset(str(path), task, inputs, y, features, [target])
    labels, class_names = _class_labels(path, frame, target, task)
    return Dataset(str(path), task, inputs, torch.tensor(labels), features, [target], class_names)
