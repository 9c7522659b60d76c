"""The artifact contract training writes and the service checks: the manifest's name and file hashes."""

import hashlib
from pathlib import Path

MANIFEST = "manifest.json"


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
