"""Order-blind baseline: the mean of token embeddings, then an MLP head.

It sees which tokens a sequence holds but not where, so it shows which tasks need attention.
"""

from dataclasses import dataclass

import torch
from torch import nn

from models._validation import raise_if_problems, type_problems
from models.tokenizer import ByteTokenizer
from models.transformer import masked_mean


@dataclass
class BagOfTokensConfig:
    vocab_size: int = ByteTokenizer.vocab_size
    """Token ids are 0..vocab_size-1; 0 is padding."""
    max_len: int = 64
    """Longest sequence accepted (kept equal to the transformer's for a fair comparison)."""
    d_model: int = 64
    """Embedding width and hidden width of the head."""
    num_classes: int = 2
    """Output classes C."""
    pad_id: int = 0
    """Id that marks padding; excluded from the mean."""

    def __post_init__(self) -> None:
        raise_if_problems("BagOfTokensConfig", type_problems(self))  # (the checks below compare numbers)
        problems = []
        for name in ("vocab_size", "max_len", "d_model"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_classes < 2:
            problems.append(f"num_classes must be >= 2, got {self.num_classes}")
        raise_if_problems("BagOfTokensConfig", problems)


class BagOfTokens(nn.Module):
    def __init__(self, config: BagOfTokensConfig) -> None:
        super().__init__()
        self.config = config
        self.pad_id = config.pad_id
        self.token_embedding = nn.Embedding(config.vocab_size, config.d_model, padding_idx=config.pad_id)
        self.head = nn.Sequential(
            nn.Linear(config.d_model, config.d_model), nn.GELU(), nn.Linear(config.d_model, config.num_classes)
        )

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """input_ids: (B, L) int64 -> logits (B, C)."""
        padding = input_ids == self.pad_id  # (B, L)
        return self.head(masked_mean(self.token_embedding(input_ids), padding))  # (B, C)
