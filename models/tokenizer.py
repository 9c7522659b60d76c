"""Byte-level tokenizer shipped with the transformer, so clients may send text instead of ids."""

import json
from pathlib import Path


class ByteTokenizer:
    """UTF-8 bytes -> ids. Ids below `offset` are reserved specials; byte b is id b + offset."""

    specials = {"<pad>": 0, "<unk>": 1, "<cls>": 2, "<sep>": 3}
    pad_id = 0
    offset = len(specials)
    vocab_size = 256 + offset

    def encode(self, text: str) -> list[int]:
        return [b + self.offset for b in text.encode("utf-8")]

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
