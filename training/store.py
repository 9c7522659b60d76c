"""Write a finished model into the BentoML model store atomically, and list what it holds.

`bentoml.models.create` copies files straight into the store, so a job killed mid-copy would
leave a half-written model that `bentoml models list` shows. Here the model is created in a
staging store on the same filesystem, then moved into place with one rename: the store either
has the whole model or none of it.
"""

import errno
import json
import os
import shutil
import time
import uuid
from pathlib import Path

import bentoml
from bentoml._internal.configuration.containers import BentoMLContainer
from bentoml._internal.models.model import ModelStore

from models.manifest import PROMOTED, held_back_in_store, promoted_in_store, read_manifest, stored_oldest_first

PROJECT_LABEL = {"project": "modelserve"}


def store_root() -> Path:
    """The model store directory BentoML uses ($BENTOML_HOME/models)."""
    return Path(BentoMLContainer.model_store_dir.get())


def check_name(name: str) -> None:
    """Refuse a model name the store cannot hold, before any training is spent on it. BentoML's rule for a
    tag's name, and no version part: `create("a:b")` would have saved version b of a model a."""
    try:
        bentoml.Tag(name)
    except ValueError as exc:
        raise ValueError(f"--name {name!r}: {exc}") from None


def save_model(name: str, artifacts: Path, labels: dict[str, str], metadata: dict) -> str:
    """Copy every file of `artifacts` into a new model `name` in the store; return its tag."""
    root = store_root()
    staging = root.parent / ".modelserve-staging" / uuid.uuid4().hex
    staging.mkdir(parents=True)
    try:
        with bentoml.models.create(name, labels={**PROJECT_LABEL, **labels}, metadata=metadata,
                                   _model_store=ModelStore(str(staging))) as model:
            for item in sorted(artifacts.iterdir()):
                shutil.copy2(item, model.path_of(item.name))
        tag = model.tag
        final = root / tag.name / tag.version
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(staging / tag.name / tag.version, final)  # the one step that publishes the model
        except OSError as exc:
            if exc.errno == errno.EXDEV:
                raise RuntimeError(
                    f"cannot publish atomically: the staging area {staging.parent} and the model store {root} are "
                    "on different filesystems; mount the volume at $BENTOML_HOME rather than $BENTOML_HOME/models"
                ) from None
            raise
        _point_latest(root / tag.name, tag.version)
        return str(tag)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _point_latest(model_dir: Path, version: str) -> None:
    tmp = model_dir / f".latest.{uuid.uuid4().hex}"
    tmp.write_text(version)
    os.replace(tmp, model_dir / "latest")


def clean_staging(older_than_s: float = 3600.0) -> None:
    """Remove what killed jobs left in the staging area (old enough not to be a live job's)."""
    staging = store_root().parent / ".modelserve-staging"
    if staging.is_dir():
        for leftover in staging.iterdir():
            if time.time() - leftover.stat().st_mtime > older_than_s:
                shutil.rmtree(leftover, ignore_errors=True)


def list_models() -> list[bentoml.Model]:
    """Models of this project in the store, newest first."""
    found = [m for m in bentoml.models.list() if m.info.labels.get("project") == "modelserve"]
    return sorted(found, key=lambda m: m.info.creation_time, reverse=True)


def has_model(name: str) -> bool:
    return any(m.tag.name == name for m in list_models())


def versions_of(name: str) -> tuple[list[bentoml.Model], dict[str, str]]:
    """The versions of `name` in the store, oldest first as the service orders them, and those held back by a breaking
    change, with why (models/manifest.py). NotFound where the store has no version of `name`."""
    stored = stored_oldest_first(name)
    return stored, held_back_in_store(Path(stored[0].path).parent, [m.tag.version for m in stored])


def served_manifest(name: str) -> tuple[str, dict] | None:
    """(Tag, manifest) of the version of `name` that a server following the store serves: the newest one not held back
    by a breaking change. None where the store has no version of `name`."""
    try:
        stored, held = versions_of(name)
    except bentoml.exceptions.NotFound:
        return None
    served = [m for m in stored if m.tag.version not in held][-1]  # (the oldest is never held back)
    return str(served.tag), read_manifest(Path(served.path))


def stored_manifests(name: str) -> list[dict]:
    """The manifests of every version of `name` in the store (none where it has none)."""
    try:
        return [read_manifest(Path(m.path)) for m in versions_of(name)[0]]
    except bentoml.exceptions.NotFound:
        return []


def promote(tag: str, undo: bool = False) -> tuple[str, str | None]:
    """Serve the stored version `tag` (NAME:VERSION) although it breaks the clients of the versions before it (or,
    with `undo`, hold it back again): every server following the store follows within its watch interval, and so do
    restarts and new replicas. Returns (its full tag, the breaking change that holds it back unless promoted, or
    None)."""
    model = bentoml.models.get(tag)  # (NotFound names what is missing)
    version, model_dir = model.tag.version, Path(model.path).parent
    listed = promoted_in_store(model_dir)
    others = [v for v in listed if v != version]
    stored = [m.tag.version for m in versions_of(model.tag.name)[0]]
    why = held_back_in_store(model_dir, stored, promoted=set(others)).get(version)
    wanted = others if undo else [*others, version]
    if wanted != listed:
        written = model_dir / f".{PROMOTED}.{uuid.uuid4().hex}"
        written.write_text(json.dumps(wanted))
        os.replace(written, model_dir / PROMOTED)  # (a server reads the old list or the new one, never half of one)
    return str(model.tag), why


__all__ = ["save_model", "list_models", "has_model", "served_manifest", "promote", "versions_of", "stored_manifests",
           "store_root", "clean_staging"]
