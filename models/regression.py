"""Linear regression on raw rows: prepare the columns (impute, scale, one-hot), one nn.Linear, de-standardise."""

from dataclasses import dataclass

import torch
from torch import nn

from models._validation import raise_if_problems, type_problems
from models.column_encoder import ColumnEncoder, TabularInputs
from models.scaling import Standardizer


@dataclass
class RegressionConfig(TabularInputs):
    n_features: int = 2
    """Columns F of the raw row (numeric and categorical)."""
    n_targets: int = 1
    """Number of real-valued targets T."""

    def __post_init__(self) -> None:
        raise_if_problems("RegressionConfig", type_problems(self))  # (the checks below compare numbers)
        problems = self.input_problems()
        if self.n_targets < 1:
            problems.append(f"n_targets must be >= 1, got {self.n_targets}")
        raise_if_problems("RegressionConfig", problems)


class LinearRegression(nn.Module):
    def __init__(self, config: RegressionConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = ColumnEncoder(config)
        self.linear = nn.Linear(self.encoder.width, config.n_targets)
        self.output_scaler = Standardizer(config.n_targets)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        z = self.encoder(features)  # (B, F) raw -> (B, width)
        return self.output_scaler.inverse(self.linear(z))  # (B, T)
