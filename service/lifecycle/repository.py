"""The Open Inference Protocol's model repository extension, as Triton and MLServer speak it: the index of every
model and version in the store with its state in this worker (READY, LOADING, or UNAVAILABLE with the reason), and
load and unload of a model. A load serves the configured policy, one version (`parameters.version`), or a new version
policy (`parameters.policy`, lifecycle/versions.py): versions, traffic weights and shadow, changed at run time.

A load or unload is done in the worker that receives it before it answers, and recorded (lifecycle/desired.py)
for the server's other workers, which follow within the watch interval."""

import anyio
import bentoml
from pydantic import ValidationError

from service.errors import InvalidInput, UnknownModel, validation_problems
from service.lifecycle.desired import UNLOADED
from service.lifecycle.versions import VersionPolicy, held_back_message, stored_versions
from service.lifecycle.watch import StoreWatcher

EXTENSION = "model_repository"


def index(registry, watcher: StoreWatcher | None) -> list[dict]:
    """[{name, version, state, reason}] for every version in the store (it reads the store: call it off the loop)."""
    entries, held = [], {}  # name -> {version held back by a breaking change: why}
    for stored in bentoml.models.list():
        name, version, tag = stored.tag.name, stored.tag.version, str(stored.tag)
        if name not in held:
            held[name] = stored_versions(name)[1]
        versions = registry.models.get(name)
        serving = versions.find(version) if versions is not None else None
        failures = watcher.failed if watcher is not None else {}
        if serving is not None:
            state, reason = ("READY", "") if serving.ready else ("LOADING", "warming up")
        elif watcher is not None and tag in watcher.loading:
            state, reason = "LOADING", "verifying, loading and warming up"
        elif tag in failures:
            state, reason = "UNAVAILABLE", failures[tag][1]
        elif name in registry.unloaded:
            state, reason = "UNAVAILABLE", "unloaded through the repository API"
        elif name in registry.errors:
            state, reason = "UNAVAILABLE", registry.errors[name]
        elif versions is None:
            state, reason = "UNAVAILABLE", "not one of the models served here (MODELSERVE_MODELS)"
        elif version in held[name]:
            state, reason = "UNAVAILABLE", held_back_message(name, version, held[name][version])
        else:
            state, reason = "UNAVAILABLE", "not a version the model's version policy serves"
        entries.append({"name": name, "version": version, "state": state, "reason": reason})
    return sorted(entries, key=lambda e: (e["name"], e["version"]))


def _policy_asked(registry, name: str, body) -> VersionPolicy:
    """`parameters.policy` (a version policy, or its JSON), or `parameters.version` (that version alone); neither:
    the configured policy."""
    parameters = body.get("parameters") if isinstance(body, dict) else None
    parameters = parameters if isinstance(parameters, dict) else {}
    version, policy = parameters.get("version"), parameters.get("policy")
    if version is not None and (not isinstance(version, str) or not version or ":" in version or "/" in version):
        raise InvalidInput(f"parameters.version must be a version of the model, as the index lists it; got {version!r}")
    try:
        if policy is not None:
            return VersionPolicy.model_validate_json(policy) if isinstance(policy, str) else \
                VersionPolicy.model_validate(policy)
    except ValidationError as error:
        raise InvalidInput(f"parameters.policy is not a version policy: {validation_problems(error, 'policy')}") \
            from None
    if version is not None:
        return VersionPolicy(versions=(version,))
    return registry.policies.get(name, VersionPolicy())


async def load(registry, watcher: StoreWatcher, name: str, body) -> None:
    """Serve `name` under the policy asked for (or one version, or the configured policy) in this worker and,
    within a second, in all."""
    policy = _policy_asked(registry, name, body)
    try:
        policy.wanted(*await anyio.to_thread.run_sync(stored_versions, name))
    except bentoml.exceptions.NotFound:
        raise UnknownModel(f"model {name!r} is not in the model store") from None
    except KeyError as error:
        raise UnknownModel(f"model {name!r}: {error.args[0]}") from None
    except (bentoml.exceptions.BentoMLException, ValueError) as error:  # (not a name a model can have)
        raise InvalidInput(f"{name!r} cannot name a model in the store: {error}") from None
    wish = policy.model_dump(mode="json", exclude_defaults=True)
    watcher.desired.set(name, wish)
    why_not = await watcher.reconcile(name, wish)
    if why_not is not None:
        raise InvalidInput(f"model {name!r} could not be loaded: {why_not}")


async def unload(registry, watcher: StoreWatcher, name: str) -> None:
    if name not in registry.models and name not in registry.policies:
        raise UnknownModel(f"model {name!r} is not served here")
    watcher.desired.set(name, UNLOADED)
    await watcher.reconcile(name, UNLOADED)
