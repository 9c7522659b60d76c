"""Standardisation baked into the model graph, so the exported model takes raw features."""

import torch
from torch import nn


class Standardizer(nn.Module):
    """(x - mean) / std with buffers fitted on the training split; identity until fitted."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(width))
        self.register_buffer("std", torch.ones(width))

    def fit(self, values: torch.Tensor) -> None:
        """Fit on raw training values (N, width). Constant columns keep std 1 to avoid 0-division."""
        std = values.std(dim=0, unbiased=False)
        self.mean.copy_(values.mean(dim=0))
        self.std.copy_(torch.where(std > 1e-12, std, torch.ones_like(std)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std  # (B, width)

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.std + self.mean  # (B, width)
