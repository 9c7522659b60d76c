"""What a model takes: feature rows or token sequences. The schema is the one object that knows which; the rest of
the service asks it to parse, merge, and make warm-up examples.

Parsing turns request instances into engine batches, or says exactly which instance and field is wrong. The fast
path hands the whole list to numpy once; only when that fails does a per-element walk run, to name the first bad
instance. Large valid requests never pay for Python loops over values.
"""

import contextlib
import itertools
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from models.columns import MISSING_CODE, Column, category_key
from models.tokenizer import ByteTokenizer
from service import metrics
from service.errors import InvalidInput
from service.runtime.drift import TokenTrainingRange, TrainingRange

TOKENIZER = ByteTokenizer()


def past_any_float(value: Any) -> bool:
    """Whether `value` is an integer beyond float64's range, which JSON allows and pydantic reads whole (orjson
    refuses it), but which no float can hold: numpy raises OverflowError on it."""
    return isinstance(value, int) and abs(value) > sys.float_info.max


def past_float32(i: int, name: str, value: int) -> InvalidInput:
    """The refusal of such an integer as instance i's feature `name`."""
    return InvalidInput(f"instance {i}, feature {name!r}: an integer of {value.bit_length()} bits is beyond "
                        "float32's range (±3.4e38)")


def kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return f"string {value[:20]!r}"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "list"
    return type(value).__name__


@dataclass(frozen=True)
class FeatureSchema:
    names: tuple[str, ...]
    columns: tuple[Column, ...] | None = None
    """What each column is (models/columns.py); None for a model trained before columns had kinds: numbers only,
    no gaps."""
    unseen_category: Any = field(default=None, compare=False)
    """Counter of instances holding a category never seen in training (the drift metric), or None."""

    has_categories: bool = field(init=False, default=False)
    """Whether any column is categorical (set from `columns`: parse asks on every request)."""
    is_tokens: ClassVar[bool] = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "has_categories",
                           self.columns is not None and any(c.is_categorical for c in self.columns))

    def parse(self, instances: list) -> np.ndarray:
        """Instances -> float32 (N, F): rows as lists in training order, or objects keyed by feature name.

        Numbers stay numbers (JSON booleans read as 0/1, as numpy and pandas read them); a category becomes its
        code; a missing value (null or "") becomes NaN, or code 0 in a categorical column, where the model imputes.
        """
        batch = None if self.has_categories else self._numeric(instances)  # lists of numbers: no Python pass at all
        if batch is None:
            # One pass over instances (not values) to turn objects into rows, then the same again.
            rows = [self._row_from_object(i, inst) if isinstance(inst, dict) else inst
                    for i, inst in enumerate(instances)]
            batch = None if self.has_categories else self._numeric(rows)
            if batch is None:
                if self.columns is None:
                    self._explain(rows)
                batch = self._prepare(rows)
        return self.as_float32(batch)

    def merge(self, batches: Sequence[np.ndarray]) -> np.ndarray:
        return np.concatenate(batches)  # (sum N, F)

    def examples(self, rows: int) -> list[np.ndarray]:
        """Warm-up batches of `rows` rows: one, as a feature model's cost does not depend on the values."""
        return [np.zeros((rows, len(self.names)), dtype=np.float32)]

    def drift(self, model: str, manifest: dict) -> TrainingRange | None:
        return TrainingRange.from_manifest(model, self.names, manifest)

    def as_float32(self, batch: np.ndarray) -> np.ndarray:
        """(N, F) numbers -> the float32 the engines compute in, refusing inf and finite values past float32's
        range (1e308 from JSON or FP64 would become inf here, and the model's answer with it), NaN where the model
        cannot impute it, and category codes outside a column's vocabulary."""
        with np.errstate(over="ignore"):  # a value past float32's range becomes inf, refused just below
            out = batch.astype(np.float32)
        if batch.dtype.kind == "f" and not np.isfinite(out).all():  # (integers are finite and fit float32)
            bad = np.isinf(out) if self.columns is not None else ~np.isfinite(out)  # (NaN: a gap, imputed inside)
            if bad.any():
                i, j = map(int, np.argwhere(bad)[0])
                value = batch[i, j]
                why = "is not a finite number" if not np.isfinite(value) else "is beyond float32's range (±3.4e38)"
                raise InvalidInput(f"instance {i}, feature {self.names[j]!r}: {value} {why}")
        if self.has_categories:
            self._check_codes(out)
        return out

    def _check_codes(self, batch: np.ndarray) -> None:
        """Codes sent as numbers (OIP `features`) must be whole numbers within the column's vocabulary."""
        for j, column in enumerate(self.columns):
            if column.is_categorical:
                codes = batch[:, j]
                bad = ~np.isnan(codes) & ((codes != np.floor(codes)) | (codes < 0) | (codes > len(column.vocabulary)))
                if bad.any():
                    i = int(np.flatnonzero(bad)[0])
                    raise InvalidInput(f"instance {i}, feature {column.name!r}: {codes[i]:g} is not a category code; "
                                       f"codes run from 1 to {len(column.vocabulary)} (0: missing or unseen)")

    def _prepare(self, rows: list) -> np.ndarray:
        """Rows of raw values (numbers, category names, nulls) -> (N, F) float64, naming the first bad value."""
        batch = np.empty((len(rows), len(self.names)), dtype=np.float64)
        codes = [c.codes() if c.is_categorical else None for c in self.columns]
        unseen = 0
        for i, row in enumerate(rows):
            self._check_row_shape(i, row, "values" if self.has_categories else "numbers")
            seen_all = True
            for j, (value, column) in enumerate(zip(row, self.columns)):
                if value is None or value == "":  # (an empty cell, as a CSV's was in training)
                    batch[i, j] = MISSING_CODE if column.is_categorical else math.nan
                elif column.is_categorical:
                    code = codes[j].get(self._category(i, column, value))
                    seen_all &= code is not None
                    batch[i, j] = MISSING_CODE if code is None else code
                elif isinstance(value, (int, float)):  # (booleans count as 0/1, as numpy reads them)
                    try:
                        batch[i, j] = value
                    except OverflowError:  # (an integer past any float; the try costs the others nothing)
                        raise past_float32(i, column.name, value) from None
                else:
                    raise InvalidInput(f"instance {i}, feature {column.name!r}: expected a number, got "
                                       f"{kind_of(value)} (null marks a missing value)")
            unseen += not seen_all
        if unseen and self.unseen_category is not None:
            self.unseen_category.inc(unseen)
        return batch

    @staticmethod
    def _category(i: int, column: Column, value) -> str:
        """The vocabulary key of a category sent as JSON: a string, or an integer for an integer-coded column."""
        if isinstance(value, str):
            return value
        if (column.value_type == "integer" and isinstance(value, (int, float)) and not isinstance(value, bool)
                and float(value).is_integer()):
            return category_key(value)
        expected = "an integer category" if column.value_type == "integer" else "a category name (a string)"
        raise InvalidInput(f"instance {i}, feature {column.name!r}: expected {expected} or null for a missing "
                           f"value, got {kind_of(value)}")

    def _numeric(self, rows: list) -> np.ndarray | None:
        """(N, F) numbers, or None when rows are ragged, hold non-numbers or have the wrong width."""
        try:
            batch = np.array(rows)  # dtype inferred: strings, nulls or objects give a non-numeric kind
        except (ValueError, TypeError):
            return None  # ragged rows
        if batch.dtype.kind not in "iuf" or batch.ndim != 2 or batch.shape[1] != len(self.names):
            return None
        return batch

    def _row_from_object(self, i: int, instance: dict) -> list:
        unknown = [k for k in instance if k not in self.names]
        if unknown:
            raise InvalidInput(f"instance {i}: unknown feature {unknown[0]!r}; expected {', '.join(self.names)}")
        missing = [n for n in self.names if n not in instance]
        if missing:
            raise InvalidInput(f"instance {i}: missing feature {missing[0]!r}; expected {', '.join(self.names)}")
        return [instance[n] for n in self.names]

    def _check_row_shape(self, i: int, row, what: str) -> None:
        """Refuse an instance that is not a list of one value per feature."""
        expected = f"{len(self.names)} {what} ({', '.join(self.names)})"
        if not isinstance(row, list):
            raise InvalidInput(f"instance {i}: expected a list of {expected} or an object keyed by feature name, "
                               f"got {kind_of(row)}")
        if len(row) != len(self.names):
            raise InvalidInput(f"instance {i}: expected {expected}, got {len(row)} values")

    def _explain(self, rows: list) -> None:
        """Raise InvalidInput naming the first bad instance and field."""
        for i, row in enumerate(rows):
            self._check_row_shape(i, row, "numbers")
            for j, value in enumerate(row):
                if not isinstance(value, (int, float)):  # booleans count as 0/1, as numpy reads them
                    raise InvalidInput(f"instance {i}, feature {self.names[j]!r}: expected a number, "
                                       f"got {kind_of(value)}")
                if past_any_float(value):
                    raise past_float32(i, self.names[j], value)
        raise InvalidInput(f"instances must be lists of {len(self.names)} numbers ({', '.join(self.names)})")


@dataclass(frozen=True)
class TokenSchema:
    vocab_size: int
    max_len: int
    pad_id: int = 0
    truncate: bool = False
    """Whether a sequence longer than max_len is read on its first max_len tokens, as the model was trained on a
    user's texts (the manifest's `truncate`), rather than refused."""
    truncated: Any = field(default=None, compare=False)
    """Counter of instances cut to max_len, or None."""
    text_columns: tuple[str, ...] = ()
    """The columns of a user's file the texts were read from in training, which a client may send by name (an object
    per instance, or a BYTES tensor per column), joined as training joined them; () for the built-in sequences."""
    is_tokens: ClassVar[bool] = True

    def parse(self, instances: list) -> np.ndarray:
        """Instances (strings, token-id lists, or objects keyed by text column) -> (N, L) int64 ids, padded to a length
        bucket.

        Three or more lists of integers are checked as one array, not id by id (a bulk request of 64 rows: 86 against
        186 us); text, one or two rows (cheaper walked) and anything the array refuses go through the walk, which
        names what is wrong."""
        if len(instances) > 2 and set(map(type, instances)) == {list} and \
                set(map(type, itertools.chain.from_iterable(instances))) == {int}:
            lengths = list(map(len, instances))
            if min(lengths) > 0 and max(lengths) <= self.max_len:
                with contextlib.suppress(OverflowError):  # (an id past int64: the walk says which)
                    batch = self.pad(instances)  # (N, L)
                    if batch.min() >= 0 and batch.max() < self.vocab_size and \
                            not (batch == self.pad_id).all(axis=1).any():
                        return batch
        sequences, cut = [], 0
        for i, instance in enumerate(instances):
            if isinstance(instance, str):
                sequences.append(self.encode_text(i, instance))
            elif isinstance(instance, list):
                sequences.append(self.check_ids(i, instance))
            elif isinstance(instance, dict) and self.text_columns:
                ids, was_cut = self.encode_columns(i, instance)
                sequences.append(ids)
                cut += was_cut
            else:
                objects = " or an object keyed by text column" if self.text_columns else ""
                raise InvalidInput(f"instance {i}: expected a string{objects} or a list of token ids, got "
                                   f"{kind_of(instance)}")
        if self.truncate and max(map(len, sequences)) > self.max_len:
            cut += sum(len(s) > self.max_len for s in sequences)
            sequences = [s[:self.max_len] for s in sequences]
        self._count_truncated(cut)
        return self.pad(sequences)

    def merge(self, batches: Sequence[np.ndarray]) -> np.ndarray:
        """Requests' (N, L) ids -> one (sum N, longest L) batch, the shorter right-padded."""
        merged = np.full((sum(b.shape[0] for b in batches), max(b.shape[1] for b in batches)), self.pad_id,
                         dtype=np.int64)
        row = 0
        for b in batches:
            merged[row:row + b.shape[0], : b.shape[1]] = b
            row += b.shape[0]
        return merged

    def examples(self, rows: int) -> list[np.ndarray]:
        """Warm-up batches of `rows` rows, one per length bucket: a token model's cost grows with the length."""
        widths = sorted({min(self.max_len, 1 << k) for k in range(3, self.max_len.bit_length() + 1)})
        return [np.full((rows, width), self.pad_id + 5, dtype=np.int64) for width in widths]

    def drift(self, model: str, manifest: dict) -> TokenTrainingRange | None:
        return TokenTrainingRange.from_manifest(model, manifest)

    def encode_text(self, i: int, text: str) -> list[int]:
        """A text's byte tokens (all of them: `parse` cuts them to max_len where the model reads longer texts so)."""
        if len(self.text_columns) > 1:
            raise InvalidInput(f"instance {i}: the model reads {len(self.text_columns)} text columns; send an object "
                               f"keyed by them ({', '.join(self.text_columns)}), not one string")
        ids = TOKENIZER.encode(text)
        if not ids:
            raise InvalidInput(f"instance {i}: empty text; send at least one character")
        if len(ids) > self.max_len and not self.truncate:
            raise InvalidInput(f"instance {i}: text is {len(ids)} byte tokens, longer than max_len {self.max_len}")
        return ids

    def encode_columns(self, i: int, instance: dict) -> tuple[list[int], bool]:
        """An object keyed by text column -> its byte tokens joined as in training (models/tokenizer.py: <sep> between
        the columns, the longest cut first past max_len), and whether they were cut. null or "" is an empty cell."""
        unknown = [k for k in instance if k not in self.text_columns]
        if unknown:
            raise InvalidInput(f"instance {i}: unknown text column {unknown[0]!r}; expected "
                               f"{', '.join(self.text_columns)}")
        texts = []
        for name in self.text_columns:
            if name not in instance:
                raise InvalidInput(f"instance {i}: missing text column {name!r} (null or \"\" for an empty one)")
            value = "" if instance[name] is None else instance[name]
            if not isinstance(value, str):
                raise InvalidInput(f"instance {i}, text column {name!r}: expected a string (null or \"\" for an "
                                   f"empty one), got {kind_of(value)}")
            texts.append(value)
        if not any(texts):
            raise InvalidInput(f"instance {i}: every text column is empty; send text in at least one")
        ids = TOKENIZER.encode_columns(texts)
        if len(ids) <= self.max_len:
            return ids, False
        if not self.truncate:
            raise InvalidInput(f"instance {i}: text is {len(ids)} byte tokens, longer than max_len {self.max_len}")
        return TOKENIZER.encode_columns(texts, self.max_len), True

    def check_ids(self, i: int, ids: list) -> list[int]:
        if not ids:
            raise InvalidInput(f"instance {i}: empty sequence; send at least one token id")
        if len(ids) > self.max_len and not self.truncate:
            raise InvalidInput(f"instance {i}: sequence has {len(ids)} tokens, longer than max_len {self.max_len}")
        for j, token in enumerate(ids):
            if isinstance(token, bool) or not isinstance(token, int):
                raise InvalidInput(f"instance {i}, token {j}: expected an integer token id, got {kind_of(token)}")
            if not 0 <= token < self.vocab_size:
                raise InvalidInput(f"instance {i}, token {j}: id {token} is outside the vocabulary "
                                   f"[0, {self.vocab_size})")
        if all(token == self.pad_id for token in itertools.islice(ids, self.max_len)):  # (what the model reads)
            raise InvalidInput(f"instance {i}: sequence holds only padding (id {self.pad_id})")
        return ids

    def pad(self, sequences: list[list[int]]) -> np.ndarray:
        """Right-pad to a length bucket (powers of two up to max_len), so the engine sees few shapes."""
        longest = max(len(s) for s in sequences)
        width = min(self.max_len, 1 << max(3, math.ceil(math.log2(longest))))
        batch = np.full((len(sequences), width), self.pad_id, dtype=np.int64)  # (N, L)
        for row, sequence in enumerate(sequences):
            batch[row, : len(sequence)] = sequence
        return batch

    def check_id_matrix(self, batch: np.ndarray) -> np.ndarray:
        """Validate an (N, L) id matrix from the v2 protocol: range, length, not all padding; cut to max_len where
        the model reads longer sequences so."""
        if batch.shape[1] > self.max_len and not self.truncate:
            raise InvalidInput(f"input_ids has sequence length {batch.shape[1]}, longer than max_len {self.max_len}")
        # min/max first: the good case, every request's, then costs two reductions and no index arrays
        if batch.size and (batch.min() < 0 or batch.max() >= self.vocab_size):
            i, j = map(int, np.argwhere((batch < 0) | (batch >= self.vocab_size))[0])
            raise InvalidInput(f"instance {i}, token {j}: id {int(batch[i, j])} is outside the vocabulary "
                               f"[0, {self.vocab_size})")
        if batch.shape[1] > self.max_len:
            self._count_truncated(int((batch[:, self.max_len:] != self.pad_id).any(axis=1).sum()))
            batch = batch[:, :self.max_len]  # (N, max_len)
        padding_only = (batch == self.pad_id).all(axis=1)  # (N,)
        if padding_only.any():
            raise InvalidInput(f"instance {int(np.flatnonzero(padding_only)[0])}: empty sequence (only padding)")
        return batch

    def _count_truncated(self, instances: int) -> None:
        if instances and self.truncated is not None:
            self.truncated.inc(instances)


def schema_for(model: str, manifest: dict) -> FeatureSchema | TokenSchema:
    """The schema of a model from its manifest."""
    if manifest["input_kind"] == "tokens":
        spec = manifest["inputs"][0]
        truncate = bool(spec.get("truncate"))  # (absent from models trained before texts were cut)
        return TokenSchema(vocab_size=spec["vocab_size"], max_len=spec["max_len"], pad_id=spec["pad_id"],
                           truncate=truncate, truncated=metrics.TRUNCATED_INSTANCES.labels(model=model),
                           text_columns=tuple(spec.get("text_columns") or ()))
    columns = manifest.get("columns")  # (absent from models trained before columns had kinds)
    return FeatureSchema(tuple(manifest["feature_names"]),
                         None if columns is None else tuple(Column.from_dict(c) for c in columns),
                         metrics.INPUTS_OUTSIDE_TRAINING_RANGE.labels(model=model, feature="unseen_category"))
