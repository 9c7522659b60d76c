"""The Open Inference Protocol's model repository extension, as Triton and MLServer speak it: every model and
version in the store with its state in this worker (READY, LOADING, or UNAVAILABLE with the reason)."""

import bentoml

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
        elif name not in registry.refs:
            state, reason = "UNAVAILABLE", "not one of the models served here (MODELSERVE_MODELS)"
        elif serving is None:
            state, reason = "UNAVAILABLE", next(iter(e for r, e in registry.errors.items() if r.startswith(name + ":")),
                                                "not loaded")
        else:
            state, reason = "UNAVAILABLE", f"version {serving.artifacts.version} is the one served"
        entries.append({"name": name, "version": version, "state": state, "reason": reason})
    return sorted(entries, key=lambda e: (e["name"], e["version"]))
