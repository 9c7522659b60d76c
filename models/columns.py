"""What each column of a tabular model is, as the manifest records it and both training and serving read it.

Pure Python (no torch), so the service can map a client's raw values to the engine's input without loading torch.
The engine takes one float row per instance in training column order: a numeric column carries its value (NaN when
missing: the graph imputes it), a categorical column carries its category's code as a whole number. Code 0 is the
slot for a missing or unseen category, code k the k-th entry of the column's vocabulary (1-based).
"""

import math
from dataclasses import asdict, dataclass, field

NUMERIC = "numeric"
CATEGORICAL = "categorical"
MISSING_CODE = 0
"""The code of a missing category and of one never seen in training: both share one learned slot."""


@dataclass(frozen=True)
class Column:
    name: str
    kind: str
    """'numeric' or 'categorical'."""
    fill_value: float | None = None
    """Numeric: the training split's median, which the graph puts in place of a missing value."""
    missing_indicator: bool = False
    """Numeric: the column had gaps in training, so the graph also feeds the model a 0/1 'was missing' input."""
    vocabulary: tuple[str, ...] = field(default=())
    """Categorical: the categories seen in the training split, sorted; code k is vocabulary[k - 1]."""
    value_type: str = "string"
    """Categorical: 'string', or 'integer' for integer codes declared categorical (--categorical)."""

    @property
    def is_categorical(self) -> bool:
        return self.kind == CATEGORICAL

    def to_dict(self) -> dict:
        values = asdict(self)
        values["vocabulary"] = list(self.vocabulary)
        if not self.is_categorical:
            del values["vocabulary"], values["value_type"]
        return values

    @classmethod
    def from_dict(cls, values: dict) -> "Column":
        return cls(**{**values, "vocabulary": tuple(values.get("vocabulary", ()))})

    def codes(self) -> dict[str, int]:
        """Category -> code, for mapping raw values."""
        return {category: code for code, category in enumerate(self.vocabulary, start=1)}


def category_key(value) -> str | None:
    """The vocabulary key of a raw categorical value: strings as they are, integers (and whole floats, as pandas
    reads an integer column with gaps) as their decimal digits; None for missing values."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
