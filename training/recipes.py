"""Default recipes: which built-in data, model config and training settings each model gets.

Sized so that training all three defaults on a 2-core CPU takes well under three minutes
(benchmarks/train_throughput.py measures it). A --config TOML or flags override any field.
"""

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Recipe:
    dataset: str
    """Built-in dataset used when no --data is given."""
    task: str
    """Task of that dataset; user data may choose another with --task."""
    model: dict[str, Any] = field(default_factory=dict)
    """Model config fields beyond those derived from the data."""
    train: dict[str, Any] = field(default_factory=dict)
    """TrainConfig fields."""


RECIPES = {
    "regression": Recipe("housing", "regression", {}, {"epochs": 15, "batch_size": 64, "lr": 0.05, "patience": 4}),
    "mlp": Recipe("zigzag", "regression", {"hidden_sizes": [64, 64], "activation": "relu"},
                  {"epochs": 60, "batch_size": 64, "lr": 3e-3, "weight_decay": 0.0, "patience": 10}),
    "transformer": Recipe("order", "binary", {"max_len": 32, "d_model": 64, "n_heads": 4, "n_layers": 2, "d_ff": 128,
                                               "dropout": 0.0},
                          {"epochs": 30, "batch_size": 64, "lr": 2e-3, "patience": 6}),
    "bag_of_tokens": Recipe("order", "binary", {"max_len": 32, "d_model": 64},
                            {"epochs": 30, "batch_size": 64, "lr": 2e-3, "patience": 6}),
}
