"""Transformer encoder classifier over token ids (pad id 0), any length up to max_len."""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models._validation import raise_if_problems, type_problems
from models.tokenizer import ByteTokenizer

# Added to attention scores of padding keys. Finite (not -inf) so that a row whose keys are all
# padding gives a uniform softmax instead of NaN; bf16 shares fp32's range, so it does not overflow.
MASKED_SCORE = -1e9
NGRAM_MAX_VOCAB = 1024  # an n-gram's id (< 3 * 1024**3) times the hash's multiplier stays below 2**63


@dataclass
class TransformerConfig:
    vocab_size: int = ByteTokenizer.vocab_size
    """Token ids are 0..vocab_size-1; 0 is padding. The default fits the byte tokenizer."""
    max_len: int = 64
    """Longest sequence accepted (learned positions exist for 0..max_len-1)."""
    d_model: int = 64
    """Width of token embeddings and of every block."""
    n_heads: int = 4
    """Attention heads; must divide d_model."""
    n_layers: int = 2
    """Number of encoder blocks."""
    d_ff: int = 128
    """Hidden width of each block's GELU feed-forward."""
    dropout: float = 0.1
    """Dropout on attention weights and residual branches."""
    num_classes: int = 2
    """Output classes C (2 for binary)."""
    pad_id: int = 0
    """Id that marks padding; masked out of attention and pooling."""
    ngram_buckets: int = 0
    """Hashed embeddings of the byte bigram and trigram ending at each position and of the bigram starting there
    (the last byte's marks the text's end), added to its token embedding, in this many buckets (fastText's trick:
    word pieces are learned from few examples, where single bytes would need many); 0: none."""

    def __post_init__(self) -> None:
        raise_if_problems("TransformerConfig", type_problems(self))  # (the checks below compare numbers)
        problems = []
        for name in ("vocab_size", "max_len", "d_model", "n_heads", "n_layers", "d_ff"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.ngram_buckets < 0:
            problems.append(f"ngram_buckets must be >= 0, got {self.ngram_buckets}")
        if self.ngram_buckets and self.vocab_size > NGRAM_MAX_VOCAB:  # (a trigram's hash must not overflow int64)
            problems.append(f"ngram_buckets needs vocab_size <= {NGRAM_MAX_VOCAB} (the byte tokenizer's is "
                            f"{ByteTokenizer.vocab_size}), got {self.vocab_size}")
        if self.n_heads >= 1 and self.d_model % self.n_heads != 0:
            problems.append(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if self.num_classes < 2:
            problems.append(f"num_classes must be >= 2, got {self.num_classes}")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0 <= self.pad_id < max(self.vocab_size, 1):
            problems.append(f"pad_id must be a valid id below vocab_size ({self.vocab_size}), got {self.pad_id}")
        raise_if_problems("TransformerConfig", problems)


class MultiHeadSelfAttention(nn.Module):
    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.n_heads = config.n_heads
        self.head_dim = config.d_model // config.n_heads
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.proj = nn.Linear(config.d_model, config.d_model)
        self.dropout = config.dropout  # on the attention weights, while training
        self.scale = self.head_dim**-0.5  # given, so the exported graph need not work it out from shapes per call

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        """x: (B, L, D) hidden states; key_mask: (B, 1, 1, L) added to the scores, MASKED_SCORE at padding keys."""
        B, L, D = x.shape
        q, k, v = self.qkv(x).split(D, dim=2)  # each (B, L, D)
        q = q.view(B, L, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, L, Dh)
        k = k.view(B, L, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, L, Dh)
        v = v.view(B, L, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, L, Dh)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask,  # (B, H, L, Dh): no query attends to padding
                                           dropout_p=self.dropout if self.training else 0.0, scale=self.scale)
        y = y.transpose(1, 2).reshape(B, L, D)  # (B, L, D): heads side by side again
        return self.proj(y)


class EncoderBlock(nn.Module):
    """Pre-LayerNorm block: x + attention(LN(x)), then x + feed-forward(LN(x))."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.ln_attn = nn.LayerNorm(config.d_model)
        self.attn = MultiHeadSelfAttention(config)
        self.ln_ff = nn.LayerNorm(config.d_model)
        self.ff = nn.Sequential(
            nn.Linear(config.d_model, config.d_ff),
            nn.GELU(),
            nn.Linear(config.d_ff, config.d_model),
        )
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.attn(self.ln_attn(x), key_mask))  # (B, L, D)
        x = x + self.dropout(self.ff(self.ln_ff(x)))  # (B, L, D)
        return x


class NgramEmbedding(nn.Module):
    """Each position's byte bigram and trigram (the ids ending there) and the bigram starting there, hashed into
    `buckets` shared embeddings. The first position's n-grams hold the padding before the text and the last one's
    the padding after it, so both ends of a text have n-grams of their own (scikit-learn's `char_wb` marks them
    with spaces): a name's ending says much of whose it is."""

    def __init__(self, vocab_size: int, buckets: int, d_model: int) -> None:
        super().__init__()
        self.base, self.buckets = vocab_size, buckets
        self.embedding = nn.Embedding(buckets, d_model)
        # Small at the start, as fastText starts its n-gram vectors: an n-gram no training text held (most buckets,
        # and some of a new text's n-grams) then adds next to nothing, where nn.Embedding's N(0, 1) adds noise as
        # large as a learnt embedding.
        nn.init.uniform_(self.embedding.weight, -1 / d_model, 1 / d_model)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids: (B, L) -> (B, L, D). Before the first id and after the last the sequence is padding (id 0)."""
        previous = F.pad(ids, (1, 0))[:, :-1]  # (B, L): the id before each
        before_previous = F.pad(ids, (2, 0))[:, :-2]  # (B, L)
        following = F.pad(ids, (0, 1))[:, 1:]  # (B, L): the id after each, padding after the last
        bigram = previous * self.base + ids  # (B, L): distinct for each pair of ids
        trigram = (before_previous * self.base + previous) * self.base + ids + self.base * self.base
        ending = ids * self.base + following + 2 * self.base * self.base * self.base  # (the last id's marks the end)
        # Knuth's multiplicative hash spreads neighbouring values over the buckets (a bigram and a trigram may share
        # one: a collision, learned around)
        return (self.embedding(bigram * 2654435761 % self.buckets) + self.embedding(trigram * 2654435761 % self.buckets)
                + self.embedding(ending * 2654435761 % self.buckets))


def masked_mean(x: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
    """Mean over the non-padding positions of x (B, L, D) -> (B, D)."""
    keep = (~padding).unsqueeze(-1).to(x.dtype)  # (B, L, 1)
    return (x * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1.0)  # (B, D)


class TransformerClassifier(nn.Module):
    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.pad_id = config.pad_id
        self.token_embedding = nn.Embedding(config.vocab_size, config.d_model, padding_idx=config.pad_id)
        self.position_embedding = nn.Embedding(config.max_len, config.d_model)
        self.ngrams = NgramEmbedding(config.vocab_size, config.ngram_buckets, config.d_model) \
            if config.ngram_buckets else None
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList([EncoderBlock(config) for _ in range(config.n_layers)])
        self.ln_final = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.num_classes)
        self.masked_score = MASKED_SCORE  # an attribute, since TorchScript cannot read module globals

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """input_ids: (B, L) int64, right-padded with pad_id -> logits (B, C)."""
        padding = input_ids == self.pad_id  # (B, L)
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)  # (L,)
        x = self.token_embedding(input_ids) + self.position_embedding(positions)[None]  # (B, L, D)
        if self.ngrams is not None:
            x = x + self.ngrams(input_ids)  # (B, L, D)
        x = self.dropout(x)
        # Added to every block's attention scores. Additive rather than boolean: a row whose keys are all padding
        # gets a uniform softmax, where a boolean mask gives NaN.
        key_mask = (padding.to(x.dtype) * self.masked_score)[:, None, None, :]  # (B, 1, 1, L)
        for block in self.blocks:
            x = block(x, key_mask)  # (B, L, D)
        x = self.ln_final(x)
        return self.head(masked_mean(x, padding))  # (B, C)
