"""Multi-layer perceptron for regression or classification on raw features."""

from dataclasses import dataclass, field

import torch
from torch import nn

from models._validation import raise_if_problems, type_problems
from models.column_encoder import ColumnEncoder, TabularInputs
from models.scaling import Standardizer

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU}


@dataclass
class MLPConfig(TabularInputs):
    n_features: int = 1
    """Columns F of the raw row (numeric and categorical)."""
    n_outputs: int = 1
    """Targets T for regression, classes C for classification (2 for binary)."""
    hidden_sizes: tuple[int, ...] = field(default=(64, 64))
    """Width of each hidden layer, in order."""
    activation: str = "relu"
    """'relu' or 'gelu'."""
    dropout: float = 0.0
    """Dropout after each hidden activation."""

    def __post_init__(self) -> None:
        raise_if_problems("MLPConfig", type_problems(self))  # (the checks below compare numbers)
        self.hidden_sizes = tuple(self.hidden_sizes)
        problems = self.input_problems()
        if self.n_outputs < 1:
            problems.append(f"n_outputs must be >= 1, got {self.n_outputs}")
        if not self.hidden_sizes or any(h < 1 for h in self.hidden_sizes):
            problems.append(f"hidden_sizes must be a non-empty list of positive widths, got {list(self.hidden_sizes)}")
        if self.activation not in ACTIVATIONS:
            problems.append(f"activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout must be in [0, 1), got {self.dropout}")
        raise_if_problems("MLPConfig", problems)


class MLP(nn.Module):
    """Linear -> activation -> dropout per hidden layer, then a linear head.

    For regression the output scaler holds the training targets' mean/std; for classification it
    stays the identity and the outputs are logits.
    """

    def __init__(self, config: MLPConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = ColumnEncoder(config)
        layers: list[nn.Module] = []
        width = self.encoder.width
        for hidden in config.hidden_sizes:
            layers += [nn.Linear(width, hidden), ACTIVATIONS[config.activation](), nn.Dropout(config.dropout)]
            width = hidden
        layers.append(nn.Linear(width, config.n_outputs))
        self.net = nn.Sequential(*layers)
        self.output_scaler = Standardizer(config.n_outputs)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        z = self.encoder(features)  # (B, F) raw -> (B, width)
        return self.output_scaler.inverse(self.net(z))  # (B, T or C)
