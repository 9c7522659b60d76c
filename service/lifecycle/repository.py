"""The Open Inference Protocol's model repository extension, as Triton and MLServer speak it: the index of every
model and version in the store with its state in this worker (READY, LOADING, or UNAVAILABLE with the reason), and
load (the latest version, or one named in `parameters.version`) and unload of a model.

A load or unload is done in the worker that receives it before it answers, and recorded (lifecycle/desired.py)
for the server's other workers, which follow within the watch interval."""

import anyio
import bentoml

from service.errors import InvalidInput, UnknownModel
from service.lifecycle.desired import LATEST, UNLOADED
from service.lifecycle.watch import StoreWatcher

EXTENSION = "model_repository"


def index(registry, watcher: StoreWatcher | None) -> list[dict]:
    """[{name, version, state, reason}] for every version in the store (it reads the store: call it off the loop)."""
    entries = []
    for stored in bentoml.models.list():
        name, version, tag = stored.tag.name, stored.tag.version, str(stored.tag)
        serving = registry.models.get(name)
        failures = watcher.failed if watcher is not None else {}
        if serving is not None and serving.artifacts.tag == tag:
            state, reason = ("READY", "") if serving.ready else ("LOADING", "warming up")
        elif watcher is not None and tag in watcher.loading:
            state, reason = "LOADING", "verifying, loading and warming up"
        elif tag in failures:
            state, reason = "UNAVAILABLE", failures[tag][1]
        elif name in registry.unloaded:
            state, reason = "UNAVAILABLE", "unloaded through the repository API"
        elif name not in registry.refs:
            state, reason = "UNAVAILABLE", "not one of the models served here (MODELSERVE_MODELS)"
        elif serving is None:
            state, reason = "UNAVAILABLE", next(iter(e for r, e in registry.errors.items() if r.startswith(name + ":")),
                                                "not loaded")
        else:
            state, reason = "UNAVAILABLE", f"version {serving.artifacts.version} is the one served"
        entries.append({"name": name, "version": version, "state": state, "reason": reason})
    return sorted(entries, key=lambda e: (e["name"], e["version"]))


def _version_asked(body) -> str | None:
    parameters = body.get("parameters") if isinstance(body, dict) else None
    version = parameters.get("version") if isinstance(parameters, dict) else None
    if version is not None and (not isinstance(version, str) or not version or ":" in version or "/" in version):
        raise InvalidInput(f"parameters.version must be a version of the model, as the index lists it; got {version!r}")
    return version


async def load(registry, watcher: StoreWatcher, name: str, body) -> None:
    """Serve `name` (the version asked for, else the latest) in this worker and, within the interval, in all."""
    version = _version_asked(body)
    ref = f"{name}:{version or 'latest'}"
    try:
        await anyio.to_thread.run_sync(bentoml.models.get, ref)
    except bentoml.exceptions.NotFound:
        raise UnknownModel(f"model {ref!r} is not in the model store") from None
    except (bentoml.exceptions.BentoMLException, ValueError) as error:  # (not a name a model can have)
        raise InvalidInput(f"{ref!r} cannot name a model in the store: {error}") from None
    watcher.desired.set(name, version or LATEST)
    why_not = await watcher.reconcile(name, version or LATEST)
    if why_not is not None:
        raise InvalidInput(f"model {ref!r} could not be loaded: {why_not}")


async def unload(registry, watcher: StoreWatcher, name: str) -> None:
    if name not in registry.models and name not in registry.refs:
        raise UnknownModel(f"model {name!r} is not served here")
    watcher.desired.set(name, UNLOADED)
    await watcher.reconcile(name, UNLOADED)

