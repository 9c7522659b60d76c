"""Find a model in the store and check every file against the manifest's sha256 before anything loads it."""

import json
from dataclasses import dataclass
from pathlib import Path

import bentoml

from models.manifest import MANIFEST, sha256_of


class ArtifactError(RuntimeError):
    """A model cannot be served: not in the store, or a file is missing or altered. `reason` labels it."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class ModelArtifacts:
    name: str
    """The name clients use in URLs (the store name)."""
    tag: str
    path: Path
    manifest: dict

    @property
    def version(self) -> str:
        return self.tag.split(":", 1)[1]


def load_artifacts(ref: str) -> ModelArtifacts:
    """Resolve `ref` (NAME:VERSION or NAME:latest) and verify its files."""
    try:
        model = bentoml.models.get(ref)
    except bentoml.exceptions.NotFound:
        raise ArtifactError(f"model {ref!r} is not in the model store; train it with `modelserve train`",
                            "not_found") from None
    path = Path(model.path)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise ArtifactError(f"{model.tag}: {manifest_path} is missing; this is not a modelserve model", "no_manifest")
    manifest = json.loads(manifest_path.read_text())
    for filename, expected in manifest["files"].items():
        file = path / filename
        if not file.is_file():
            raise ArtifactError(f"{model.tag}: file {filename} listed in the manifest is missing ({file})",
                                "missing_file")
        if sha256_of(file) != expected:
            raise ArtifactError(f"{model.tag}: file {filename} does not match its sha256 in the manifest; "
                                "it was altered or corrupted after training", "checksum")
    return ModelArtifacts(name=model.tag.name, tag=str(model.tag), path=path, manifest=manifest)
