"""Data-aware defaults: what the job sets for the data it was given, each with the reason, unless the user set it.

The recipes (recipes.py) are tuned for the built-in data sets. A user's table is often small (a few hundred rows),
and is judged against the one-liner an ML engineer already knows (scikit-learn's pipelines). Each choice lands in
the manifest and is printed at the end of the job. Classes are not weighted by default, as scikit-learn's are not:
balanced weights trade accuracy for the rare classes' recall (on seattle-weather, 0.555 against 0.612 held-out
accuracy, benchmarks/real_data.py); `class_weight = "balanced"` under [train] asks for them.
"""

import contextlib
from dataclasses import asdict, dataclass, replace
from typing import Any

from training.data import Dataset
from training.loop import TrainConfig
from training.tables import CHOSEN_MAX_LEN

SMALL_DATA_ROWS = 10_000
"""Below this many training rows the MLP gets the small-data settings, and the transformer on a user's texts a refit."""


@dataclass(frozen=True)
class Choice:
    setting: str
    value: Any
    why: str

    def as_dict(self) -> dict:
        return asdict(self)


def choose(model_name: str, train: Dataset, config: TrainConfig, user_set: set[str],
           user_data: bool) -> tuple[TrainConfig, list[Choice]]:
    """`config` with the defaults this data calls for; fields in `user_set` (flags, TOML [train]) are kept."""
    choices: list[Choice] = []

    def pick(setting: str, value: Any, why: str) -> None:
        if setting not in user_set and getattr(config, setting) != value:
            choices.append(Choice(setting, value, why))

    rows = len(train)
    if model_name == "regression":
        pick("solver", "lstsq", "linear least squares has an exact optimum: solved with torch.linalg.lstsq instead "
                                "of approached by gradient steps")
        pick("refit", True, "the validation split measured the solution; the model exported is solved again on all "
                            "training rows")
    if model_name == "mlp" and user_data and rows < SMALL_DATA_ROWS:
        pick("weight_decay", 0.1, f"{rows} training rows are few for the MLP's weights: stronger weight decay keeps "
                                  "it from memorising them")
        # (32 rows a step left a 72-row table at 30 steps when the noisy validation score stopped it early)
        pick("batch_size", min(32, max(8, rows // 100)), f"a hundredth of {rows} rows, from 8 to 32: more "
                                                         "optimizer steps an epoch on few rows")
        pick("epochs", 200, "small data trains fast; the validation score picks the epoch")
        pick("patience", 30, "on a small validation split the score is noisy from epoch to epoch")
        pick("refit", True, "the validation split picks the epoch count, then the model trains again on all "
                            "training rows for that many epochs: small data cannot spare a fifth of its rows")
    if model_name == "transformer" and user_data and rows < SMALL_DATA_ROWS:
        # (first names to sex, benchmarks/real_data.py: 0.826 held out without, 0.833 with, the mean of three seeds)
        pick("refit", True, f"{rows} texts are few: the validation split picks the epoch count, then the model "
                            "trains again on all training rows, whose n-grams it would otherwise never see")
    return replace(config, **{c.setting: c.value for c in choices}), choices


def max_len_range(stored: list[dict]) -> tuple[int, int]:
    """Where the job fits max_len to a user's texts (where [model] sets none): from 32 to 512, and no shorter than that
    of any version in the store (`stored`: their manifests), whose clients' texts a shorter one would refuse."""
    kept = 0
    for manifest in stored:
        with contextlib.suppress(KeyError, IndexError, TypeError, ValueError):  # (a manifest of another layout)
            kept = max(kept, int(manifest["inputs"][0]["max_len"]))
    return max(CHOSEN_MAX_LEN[0], kept), max(CHOSEN_MAX_LEN[1], kept)


NGRAM_BUCKETS = 16_384
"""The transformer's hashed byte bigram and trigram embeddings on a user's texts (models/transformer.py)."""


def text_choices(model_name: str, dataset: Dataset, max_len: int | tuple[int, int], model_table: dict) -> list[Choice]:
    """What the job sets in the token model's config for a user's texts, unless [model] sets it: max_len (where
    `max_len` is the range it was fitted in) and, for the transformer, n-gram embeddings."""
    choices = [fitted_max_len(dataset, shortest=max_len[0])] if isinstance(max_len, tuple) else []
    if model_name == "transformer" and "ngram_buckets" not in model_table:
        # SpamAssassin's emails (benchmarks/real_data.py), held out: 0.915 accuracy from bytes alone, 0.974 with them
        choices.append(Choice("ngram_buckets", NGRAM_BUCKETS, "a few thousand texts are few to learn words from "
                              "single bytes: hashed byte bigrams and trigrams give the model word pieces from the "
                              "start, as fastText does"))
    return choices


def fitted_max_len(dataset: Dataset, shortest: int) -> Choice:
    """The max_len a user's texts were padded to, fitted in max_len_range (`shortest`: its lower end)."""
    longest, width = int((dataset.inputs != 0).sum(dim=1).max()), dataset.inputs.shape[1]
    why = f"the longest text is {longest} byte tokens: the smallest power of two from {CHOSEN_MAX_LEN[0]} that holds it"
    if dataset.truncated_texts:
        why = (f"the longest the job chooses; {dataset.truncated_texts} longer text(s) keep their first {width} byte "
               "tokens, as the service will read them")
    elif width == shortest > CHOSEN_MAX_LEN[0]:
        why = f"a stored version's, so that its clients' texts still fit (the longest text here is {longest})"
    return Choice("max_len", width, why)
