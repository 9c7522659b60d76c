"""Linear regression on raw features: standardise, one nn.Linear, de-standardise the targets."""

from dataclasses import dataclass

import torch
from torch import nn

from models._validation import raise_if_problems, type_problems
from models.scaling import Standardizer


@dataclass
class RegressionConfig:
    n_features: int = 2
    """Number of input features F."""
    n_targets: int = 1
    """Number of real-valued targets T."""

    def __post_init__(self) -> None:
        raise_if_problems("RegressionConfig", type_problems(self))  # (the checks below compare numbers)
        problems = []
        if self.n_features < 1:
            problems.append(f"n_features must be >= 1, got {self.n_features}")
        if self.n_targets < 1:
            problems.append(f"n_targets must be >= 1, got {self.n_targets}")
        raise_if_problems("RegressionConfig", problems)


class LinearRegression(nn.Module):
    def __init__(self, config: RegressionConfig) -> None:
        super().__init__()
        self.config = config
        self.input_scaler = Standardizer(config.n_features)
        self.linear = nn.Linear(config.n_features, config.n_targets)
        self.output_scaler = Standardizer(config.n_targets)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        z = self.input_scaler(features)  # (B, F)
        return self.output_scaler.inverse(self.linear(z))  # (B, T)
