"""Byte-level tokenizer shipped with the transformer, so clients may send text instead of ids."""

import json
from collections.abc import Sequence
from pathlib import Path


class ByteTokenizer:
    """UTF-8 bytes -> ids. Ids below `offset` are reserved specials; byte b is id b + offset."""

    specials = {"<pad>": 0, "<unk>": 1, "<cls>": 2, "<sep>": 3}
    pad_id = 0
    offset = len(specials)
    vocab_size = 256 + offset

    def encode(self, text: str) -> list[int]:
        return [b + self.offset for b in text.encode("utf-8")]

    def encode_columns(self, texts: Sequence[str], max_len: int | None = None) -> list[int]:
        """Several text columns' values (one row) -> one sequence: each column's bytes in order, <sep> between them (an
        empty cell an empty part, so each column keeps its place). Past `max_len` the longest parts are cut first, as
        BERT's tokenizers cut a pair of texts, so a long first column does not crowd out the others. Training and the
        service both read a row through here."""
        parts = [self.encode(text) for text in texts]
        if max_len is not None:
            budget = max(0, max_len - (len(parts) - 1))  # (the separators are kept)
            parts = [part[:keep] for part, keep in zip(parts, longest_cut_first(list(map(len, parts)), budget))]
        ids = parts[0]
        for part in parts[1:]:
            ids += [self.specials["<sep>"], *part]
        return ids

    def decode(self, ids: list[int]) -> str:
        return bytes(i - self.offset for i in ids if i >= self.offset).decode("utf-8", errors="replace")

    def to_dict(self) -> dict:
        return {"type": "byte", "specials": self.specials, "offset": self.offset, "vocab_size": self.vocab_size}

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: Path) -> "ByteTokenizer":
        spec = json.loads(Path(path).read_text())
        tokenizer = cls()
        if spec != tokenizer.to_dict():
            raise ValueError(f"{path}: tokenizer spec {spec} does not match this code's byte tokenizer")
        return tokenizer


def longest_cut_first(lengths: list[int], budget: int) -> list[int]:
    """How much of each part to keep so that they add up to at most `budget`: the longest parts are cut first, down to
    a common cap, and the tokens left over go to the earliest of the parts that were cut."""
    if sum(lengths) <= budget:
        return lengths
    cap = 0  # the largest cap the parts fit under: sum(min(length, cap)) <= budget
    low, high = 0, max(lengths)
    while low <= high:
        middle = (low + high) // 2
        if sum(min(length, middle) for length in lengths) <= budget:
            cap, low = middle, middle + 1
        else:
            high = middle - 1
    kept = [min(length, cap) for length in lengths]
    left = budget - sum(kept)
    for i, length in enumerate(lengths):
        if left and length > cap:
            kept[i] += 1
            left -= 1
    return kept
