"""The artifact contract training writes and the service checks: the manifest's name and file hashes, and what a
version's clients rest on."""

import contextlib
import hashlib
import json
from pathlib import Path

MANIFEST = "manifest.json"
PROMOTED = "promoted.json"
"""Beside a model's versions in the store: the versions served although they break the clients of those before."""


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _contract(manifest: dict) -> dict:
    """What clients of a version rest on: the inputs they send, and the answers they read."""
    columns = manifest.get("columns") or ()
    return {"input kind": manifest["input_kind"], "features": manifest["feature_names"],
            "categorical columns": [f"{c['name']} ({c['value_type']})" for c in columns if c["kind"] == "categorical"],
            "task": manifest["task"], "classes": manifest["class_names"],
            "outputs": [f"{o['name']} {o['shape']}" for o in manifest["outputs"]]}


def breaking_change(served: dict, candidate: dict) -> str | None:
    """How the `candidate` version's manifest breaks what clients of the `served` one send or read, or None. A
    vocabulary may change (an unseen category is served as missing), and a longer max_len refuses nothing; a version
    that refuses texts longer than max_len breaks the clients of one that cut them (its manifest's `truncate`)."""
    old, new = _contract(served), _contract(candidate)
    changes = [f"{what} {old[what]} -> {new[what]}" for what in old if old[what] != new[what]]
    old_len, new_len = (m["inputs"][0].get("max_len") or 0 for m in (served, candidate))
    if new_len < old_len:
        changes.append(f"max_len {old_len} -> {new_len}")
    if served["inputs"][0].get("truncate") and not candidate["inputs"][0].get("truncate"):
        changes.append("a text longer than max_len is refused, no longer read on its first max_len tokens")
    return "; ".join(changes) or None


def read_manifest(version_dir: Path) -> dict:
    """A stored version's manifest; empty where it has none that reads (loading that version says why)."""
    try:
        return json.loads((version_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}


def promoted_in_store(model_dir: Path) -> list[str]:
    """The versions `modelserve promote` promoted, in the order it did (the PROMOTED file beside the versions)."""
    try:
        return json.loads((model_dir / PROMOTED).read_text())
    except FileNotFoundError:
        return []


def stored_oldest_first(name: str) -> list:
    """The stored versions of `name` (bentoml.Model) by creation time, the one order the service and the training job
    both read them in (BentoML points `latest` at the newest the same way). Versions of the same creation time (a
    copy made by hand) put the one `latest` names last, so that every server, whatever order its disk lists them in,
    serves the same one. NotFound where there is none."""
    import bentoml  # (here, not above: the GPU benchmarks import models/ where BentoML is not installed)

    latest = bentoml.models.get(f"{name}:latest")  # (NotFound where none; refuses what no model can be named)
    return sorted(bentoml.models.list(latest.tag.name),
                  key=lambda m: (m.info.creation_time, m.tag.version == latest.tag.version))


def held_back_in_store(model_dir: Path, versions: list[str], promoted: set[str] | None = None) -> dict[str, str]:
    """held_back() for a model's versions in the store (`model_dir`/VERSION, oldest first), with the promotions made
    by `modelserve promote` (or those given)."""
    promoted = set(promoted_in_store(model_dir)) if promoted is None else promoted
    return held_back([(version, read_manifest(model_dir / version)) for version in versions], promoted)


def held_back(manifests: list[tuple[str, dict]], promoted: set[str]) -> dict[str, str]:
    """Of a model's versions (oldest first, each with its manifest), those a server following the store does not
    serve, each with why: a version that breaks the clients of the newest one before it that is not held back, unless
    promoted. Every server, restart and new replica reads the same store, so all of them serve the same versions,
    and one promotion moves all of them to the new contract."""
    held, head = {}, None
    for version, manifest in manifests:
        change = None
        if head is not None and version not in promoted:
            with contextlib.suppress(KeyError):  # (a manifest of another layout: nothing to compare with)
                change = breaking_change(head[1], manifest)
        if change:
            held[version] = f"it would break the clients of version {head[0]} ({change})"
        elif manifest:  # (a version whose manifest does not read fails to load, and leaves the contract as it was)
            head = (version, manifest)
    return held
