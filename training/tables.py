"""A user's CSV or Parquet file as a Dataset: the file read as it was written (delimiter, decimal mark, encoding),
each column's kind inferred or declared, gaps kept for the model to impute, text as byte tokens. Any problem raises
DataError with one line naming the file, column and row.
"""

import csv
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from models import ByteTokenizer
from models.columns import CATEGORICAL, MISSING_CODE, NUMERIC, Column, category_key
from training.data import Dataset
from training.errors import DataError

MIN_ROWS = 10  # below this a train/validation split says nothing
MAX_CATEGORIES = 1000
"""Most distinct values a categorical column may hold; also at most half its rows (see _too_many_categories)."""
CHOSEN_MAX_LEN = (32, 512)
"""The range of the max_len the job chooses for a user's text column (training/choices.py: max_len_range)."""
NUMERIC_SHARE_FOR_TYPOS = 0.9
"""A column whose values are at least this share numbers is read as numeric with a few bad cells, not as categories."""


def _read_table(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a .csv or .parquet file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            frame = _read_csv(path)
        elif suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            raise DataError(f"{path}: unsupported file type {suffix!r}; use .csv or .parquet")
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file is empty") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: is neither UTF-8 nor Windows-1252 text; save it as UTF-8 CSV") from None
    except (pd.errors.ParserError, OSError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path}: cannot be read as {suffix[1:]}: {str(exc).splitlines()[0]}") from None
    if len(frame) == 0:
        raise DataError(f"{path}: file has a header but no data rows")
    return frame


def _read_csv(path: Path) -> pd.DataFrame:
    """UTF-8, else Windows-1252 (what Excel's plain "CSV" writes on Windows; frame.attrs["encoding"] says so)."""
    delimiter = _delimiter(path)  # (a semicolon's files write decimal commas; a point still reads, as text)
    options = {"sep": delimiter, "decimal": "," if delimiter == ";" else ".", "skipinitialspace": True}
    try:
        return pd.read_csv(path, **options)
    except UnicodeDecodeError:
        frame = pd.read_csv(path, encoding="cp1252", **options)
        frame.attrs["encoding"] = "Windows-1252"
        return frame


def _delimiter(path: Path) -> str:
    """The CSV's delimiter, told from its header line: a comma, else a semicolon (spreadsheets write those where the
    comma is the decimal mark), tab or bar."""
    with path.open(newline="", encoding="utf-8", errors="replace") as file:
        header = file.readline()
    try:
        return csv.Sniffer().sniff(header, delimiters=",;\t|").delimiter
    except csv.Error:  # (one column, or no header line at all: pandas says what is wrong)
        return ","


def _where(path: Path, column: str, row: int) -> str:
    """'file: column 'x', row 7 (line 8)': row is the 1-based data row; line counts the CSV header."""
    line = f" (line {row + 1})" if path.suffix.lower() == ".csv" else ""
    return f"{path}: column {column!r}, row {row}{line}"


def _numeric_column(path: Path, frame: pd.DataFrame, column: str, allow_missing: bool = False,
                    hint: str = "") -> np.ndarray:
    """The column as float64, NaN for an empty cell where `allow_missing`; any other non-number is refused."""
    raw = frame[column]
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
    for i in np.flatnonzero(~np.isfinite(values)):
        original, where = raw.iloc[i], _where(path, column, int(raw.index[i]) + 1)
        if pd.isna(original):
            if allow_missing:
                continue
            raise DataError(f"{where}: missing value (NaN)")
        if isinstance(original, str) and pd.isna(pd.to_numeric(original, errors="coerce")):
            raise DataError(f"{where}: {original!r} is not a number{hint}")
        raise DataError(f"{where}: {str(original)!r} is not a finite number")
    # Finite in float64 but inf in the float32 that training and serving compute in: say so here, rather than
    # train on inf and fail later with a NaN somewhere else.
    beyond = np.flatnonzero(np.nan_to_num(np.abs(values)) > np.finfo(np.float32).max)
    if beyond.size:
        i = int(beyond[0])
        raise DataError(f"{_where(path, column, int(raw.index[i]) + 1)}: {str(raw.iloc[i])!r} is beyond float32's "
                        "range (±3.4e38), which training and serving compute in")
    return values


def _categorical_column(path: Path, frame: pd.DataFrame, column: str, declared: bool) -> tuple[np.ndarray, Column]:
    """Codes (N,) float64 over the categories of every row (fit_columns narrows them to the training split's)."""
    raw = frame[column]
    present = raw[raw.notna()]
    numbers = pd.to_numeric(present, errors="coerce")
    integer_coded = declared and bool(numbers.notna().all())
    if integer_coded and not (numbers % 1 == 0).all():
        i = int(np.flatnonzero((numbers % 1 != 0).to_numpy())[0])
        raise DataError(f"{_where(path, column, int(present.index[i]) + 1)}: {present.iloc[i]!r} is neither a "
                        "string nor an integer, so it cannot be a category; leave the column out of --categorical")
    keys = [category_key(v.item() if hasattr(v, "item") else v) for v in raw]
    vocabulary = sorted({k for k in keys if k is not None}, key=lambda k: (len(k), k) if integer_coded else k)
    if _too_many_categories(len(vocabulary), len(present)):
        numbers_hint = (f"if it holds numbers, declare it numeric with --numeric {column}; " if
                        numbers.notna().mean() >= 0.5 else "")
        raise DataError(f"{path}: column {column!r} has {len(vocabulary)} distinct values in {len(present)} rows, "
                        f"too many to learn from as categories (the limit is half the rows and at most "
                        f"{MAX_CATEGORIES}); {numbers_hint}if it is an identifier or free text, leave it out with "
                        f"--exclude {column}")
    code_of = {key: code for code, key in enumerate(vocabulary, start=1)}
    codes = np.array([MISSING_CODE if k is None else code_of[k] for k in keys], dtype=np.float64)
    return codes, Column(column, CATEGORICAL, vocabulary=tuple(vocabulary),
                         value_type="integer" if integer_coded else "string")


def _too_many_categories(distinct: int, rows: int) -> bool:
    return distinct > MAX_CATEGORIES or (distinct > 10 and distinct > rows // 2)


def _column_kind(path: Path, frame: pd.DataFrame, column: str, categorical: set[str], numeric: set[str]) -> str:
    """Declared, or inferred: numbers (blanks aside) are numeric, strings categorical. A column of numbers with a
    few other cells is numeric with typos, refused cell by cell in _numeric_column, not a column of categories."""
    if column in categorical:
        return CATEGORICAL
    if column in numeric:
        return NUMERIC
    present = frame[column].dropna()  # (never empty: _feature_columns refuses an all-empty column first)
    share = pd.to_numeric(present, errors="coerce").notna().mean()
    return NUMERIC if share >= NUMERIC_SHARE_FOR_TYPOS else CATEGORICAL


def _feature_columns(path: Path, frame: pd.DataFrame, features: list[str], categorical: set[str],
                     numeric: set[str]) -> tuple[np.ndarray, list[Column]]:
    """(N, F) float64 rows and what each column is."""
    values, columns = [], []
    for name in features:
        if frame[name].isna().all():
            raise DataError(f"{path}: column {name!r} is empty in every row; leave it out with --exclude {name}")
        if frame[name].dtype.kind in "mM":  # (Parquet's dates, durations: as numbers, counts of microseconds)
            raise DataError(f"{path}: column {name!r} holds dates or durations, which the models take neither as "
                            f"numbers nor as categories: derive what matters (the month, the day of the week) as a "
                            f"column of its own, or leave it out with --exclude {name}")
        if _column_kind(path, frame, name, categorical, numeric) == CATEGORICAL:
            codes, column = _categorical_column(path, frame, name, declared=name in categorical)
        else:
            hint = "" if name in numeric else f" (if the column is categorical, declare it with --categorical {name})"
            codes, column = _numeric_column(path, frame, name, allow_missing=True, hint=hint), Column(name, NUMERIC)
        values.append(codes)
        columns.append(column)
    return np.stack(values, axis=1), columns


def fit_columns(train: Dataset, val: Dataset) -> tuple[Dataset, Dataset]:
    """Fit the column preparation on the training split only: each category column's vocabulary becomes the
    categories the training rows hold (others, in validation rows, take the missing-or-unseen code 0), and a
    numeric column with gaps in the training rows gets a was-missing indicator. The median that fills gaps and the
    scaling are fitted inside the model (models/column_encoder.py)."""
    if train.columns is None:
        return train, val
    columns, train_inputs, val_inputs = [], train.inputs.clone(), val.inputs.clone()
    for j, column in enumerate(train.columns):
        if column.is_categorical:
            seen = sorted(set(train_inputs[:, j].long().tolist()) - {MISSING_CODE})  # old codes, in vocabulary order
            new_code = torch.zeros(len(column.vocabulary) + 1)  # old code -> new code; unseen -> 0
            new_code[torch.tensor(seen, dtype=torch.long)] = torch.arange(1, len(seen) + 1, dtype=torch.float32)
            train_inputs[:, j] = new_code[train_inputs[:, j].long()]
            val_inputs[:, j] = new_code[val_inputs[:, j].long()]
            column = replace(column, vocabulary=tuple(column.vocabulary[code - 1] for code in seen))
        else:
            column = replace(column, missing_indicator=bool(torch.isnan(train_inputs[:, j]).any()))
        columns.append(column)
    return (replace(train, inputs=train_inputs, columns=columns), replace(val, inputs=val_inputs, columns=columns))


def _class_labels(path: Path, frame: pd.DataFrame, column: str, task: str) -> tuple[np.ndarray, list[str]]:
    raw = frame[column]
    missing = np.flatnonzero(raw.isna().to_numpy())
    if len(missing):
        raise DataError(f"{_where(path, column, missing[0] + 1)}: missing class label")
    names = sorted({category_key(v) for v in raw})  # (an integer column with gaps reads as floats: 1.0 -> '1')
    if len(names) < 2:
        raise DataError(f"{path}: column {column!r} holds a single class {names}; classification needs two or more")
    if _too_many_categories(len(names), len(raw)):
        raise DataError(f"{path}: column {column!r} has {len(names)} distinct values in {len(raw)} rows, too many "
                        f"classes to learn from (the limit is half the rows and at most {MAX_CATEGORIES}); a number to "
                        "predict is a regression (--task regression, with the regression or mlp model)")
    if task == "binary" and len(names) != 2:
        raise DataError(f"{path}: --task binary needs exactly 2 classes in {column!r}, "
                        f"found {len(names)}: {names[:10]}")
    index = {name: i for i, name in enumerate(names)}
    return np.array([index[category_key(v)] for v in raw], dtype=np.int64), names


def _token_columns(frame: pd.DataFrame, columns: list[str], max_len: int | tuple[int, int]) -> tuple[np.ndarray, int]:
    """(N, L) token ids of the text columns (rows empty in all of them already left out; an empty cell reads as an
    empty part), and how many texts were longer than L and were cut to it, the longest columns first, as the service
    cuts them (models/tokenizer.py encode_columns). L: `max_len`, or where it is a range (shortest, longest), the
    smallest power of two in it that holds the longest text."""
    tokenizer = ByteTokenizer()
    rows = list(zip(*(frame[c].fillna("").astype(str) for c in columns)))
    lengths = [len(tokenizer.encode_columns(row)) for row in rows]
    if isinstance(max_len, tuple):
        max_len = min(max_len[1], max(max_len[0], 1 << (max(lengths) - 1).bit_length()))
    ids = np.zeros((len(frame), max_len), dtype=np.int64)  # (N, L), 0 = padding
    for i, row in enumerate(rows):
        tokens = tokenizer.encode_columns(row, max_len)
        ids[i, : len(tokens)] = tokens
    return ids, sum(length > max_len for length in lengths)


def load_table(path: Path, target: str, features: list[str] | None, task: str, input_kind: str,
               max_len: int | tuple[int, int] = 64, categorical: list[str] | None = None,
               numeric: list[str] | None = None, exclude: list[str] | None = None) -> Dataset:
    """Load a user CSV/Parquet file. input_kind 'features' reads numeric and categorical columns (kinds inferred
    unless declared in `categorical` / `numeric`); 'tokens' text columns, joined with <sep> between them and padded to
    `max_len` (a range: chosen for its longest text; a longer text is cut to max_len byte tokens). Rows whose target is
    empty, and token rows whose text is empty in every column, are left out and counted, as are the texts cut."""
    path = Path(path)
    frame = _read_table(path)
    encoding = frame.attrs.get("encoding", "UTF-8")
    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    if target not in columns:
        raise DataError(f"{path}: target column {target!r} not found; columns are {columns}")
    unnamed = tuple(c for c in columns if re.fullmatch(r"Unnamed: \d+", c))  # (pandas' name for an empty header cell)
    features = features or [c for c in columns if c != target and c not in unnamed]
    for what, names in (("feature column(s)", features), ("--exclude names column(s)", exclude or [])):
        unknown = [f for f in names if f not in columns]
        if unknown:
            raise DataError(f"{path}: {what} {unknown} not found; columns are {columns}")
    features = [f for f in features if f not in (exclude or [])]
    if target in features:
        raise DataError(f"{path}: column {target!r} is both the target and a feature")
    repeated = sorted({f for f in features if features.count(f) > 1})
    if repeated:  # (the service takes rows keyed by feature name: a name twice would be two inputs under one key)
        raise DataError(f"{path}: feature column(s) {repeated} named more than once in the features")
    if not features:
        raise DataError(f"{path}: no feature columns besides the target {target!r}")
    declared = {"--categorical": categorical or [], "--numeric": numeric or []}
    for flag, names in declared.items():
        strays = [n for n in names if n not in features]
        if strays:
            raise DataError(f"{path}: {flag} names {strays}, which are not feature columns; features are {features}")
    both = sorted(set(declared["--categorical"]) & set(declared["--numeric"]))
    if both:
        raise DataError(f"{path}: column(s) {both} declared both --categorical and --numeric")
    empty_target = frame[target].isna().to_numpy()
    if empty_target.all():
        raise DataError(f"{path}: target column {target!r} is empty in every row")
    frame = frame[~empty_target]  # (keeping the file's row numbers in its index, for messages)
    if len(frame) < MIN_ROWS:
        raise DataError(f"{path}: {len(frame)} data rows with a target; a train/validation split needs at least "
                        f"{MIN_ROWS}")

    columns, dropped_without_text, truncated_texts = None, 0, None
    if input_kind == "tokens":
        numbers = [f for f in features if pd.api.types.is_numeric_dtype(frame[f])]  # (booleans too)
        if len(features) > 1 and numbers:  # (a client would send 3 where training read "3.0": not text to join)
            raise DataError(f"{path}: column(s) {numbers} hold numbers, not text; the transformer reads text columns, "
                            f"joined: --exclude {','.join(numbers)}, or --features the text columns")
        cells = frame[features]
        empty_text = (cells.isna() | (cells.astype(str) == "")).all(axis=1).to_numpy()
        if empty_text.all():
            raise DataError(f"{path}: text column(s) {features} are empty in every row with a target")
        frame, dropped_without_text = frame[~empty_text], int(empty_text.sum())
        if len(frame) < MIN_ROWS:
            raise DataError(f"{path}: {len(frame)} data rows with a target and a text; a train/validation split "
                            f"needs at least {MIN_ROWS}")
        ids, truncated_texts = _token_columns(frame, features, max_len)
        inputs = torch.tensor(ids)
    else:
        matrix, columns = _feature_columns(path, frame, features, set(declared["--categorical"]),
                                           set(declared["--numeric"]))
        inputs = torch.tensor(matrix, dtype=torch.float32)  # (N, F)

    found = {"columns": columns, "dropped_rows": int(empty_target.sum()),
             "dropped_rows_without_text": dropped_without_text, "truncated_texts": truncated_texts,
             "unnamed_columns": unnamed, "encoding": encoding}
    if task == "regression":
        hint = " (to predict classes, say --task multiclass or --task binary)"
        y = torch.tensor(_numeric_column(path, frame, target, hint=hint), dtype=torch.float32).unsqueeze(1)  # (N, 1)
        return Dataset(str(path), task, inputs, y, features, [target], **found)
    labels, class_names = _class_labels(path, frame, target, task)
    return Dataset(str(path), task, inputs, torch.tensor(labels), features, [target], class_names, **found)
