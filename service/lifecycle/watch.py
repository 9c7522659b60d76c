"""New versions of the served models go live without a restart: each worker looks at the store every interval.

A model whose version policy follows the store (the newest N versions, lifecycle/versions.py) gets each newer version
verified (the sha256 of every file against its manifest), loaded, warmed up, and only then swapped in; requests
already running finish on the version they started on, and a version no longer served is closed once they have. A
version that fails any step leaves the served ones untouched, is logged once with its reason, counted in
modelserve_model_load_failures_total, and is not tried again until its files change. A version that would break
the clients of the one before it (other features or kinds, task, classes or outputs) is held back until promoted
(models/manifest.py held_back), as a Triton model's config holds every version to its inputs; the repository API
serves it in one server when asked to by version. Every worker runs its own watcher, so all of them switch within the
interval.
"""

import asyncio
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import bentoml

from service import metrics
from service.lifecycle.desired import UNLOADED, DesiredState
from service.lifecycle.versions import ModelVersions, VersionPolicy, held_back_message, stored_versions
from service.runtime.artifacts import ArtifactError
from service.runtime.registry import free_memory

log = logging.getLogger("modelserve")
TICK_S = 1.0  # how soon a server's other workers follow a load or unload
INCOMPATIBLE = "incompatible"


def _fingerprint(path: Path) -> tuple:
    """What changes when a version's files change: each file's name, size and modification time."""
    return tuple(sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in path.iterdir() if p.is_file()))


def reason_of(error: Exception) -> str:
    """The failure's label in modelserve_model_load_failures_total."""
    if isinstance(error, ArtifactError):
        return error.reason
    return "schema" if isinstance(error, (KeyError, ValueError)) else "load_error"


@dataclass
class StoreWatcher:
    registry: object  # runtime.registry.ModelRegistry
    store_interval_s: float | None
    """How often NAME:latest is looked up again in the store; None: only the repository API's wishes are followed."""
    desired: DesiredState = field(default_factory=DesiredState)
    loading: set[str] = field(default_factory=set)
    """Tags being verified, loaded or warmed up in this worker."""
    failed: dict[str, tuple[str, str, tuple]] = field(default_factory=dict)
    """Tag -> (reason label, message, the fingerprint of its files when it failed)."""
    busy: dict[str, asyncio.Lock] = field(default_factory=lambda: defaultdict(asyncio.Lock))
    """Per model: held while its versions change, so that the repository API's load and this worker's own look (one
    following another worker's load, say) run one after the other; the second finds the first's work done."""

    async def run(self) -> None:
        """Every second, follow the repository API's wishes; every store interval, look for new versions too."""
        next_look = time.monotonic() + (self.store_interval_s or 0.0)
        while True:
            await asyncio.sleep(TICK_S)
            look = self.store_interval_s is not None and time.monotonic() >= next_look
            if look:
                next_look = time.monotonic() + self.store_interval_s
            try:
                await self.check_once(look)
            except Exception:  # (a store being rewritten under us: look again next time)
                log.exception("looking for new model versions failed")

    async def check_once(self, look_in_store: bool = True) -> None:
        wishes = self.desired.read()
        for name in {*self.registry.policies, *wishes}:
            await self.reconcile(name, wishes.get(name), look_in_store)

    async def reconcile(self, name: str, wish: dict | str | None, look_in_store: bool = False) -> str | None:
        """Serve what `wish` (from the repository API: UNLOADED or a version policy; None: the configured policy)
        asks for; why not, or None. Versions that fail leave the served ones untouched."""
        async with self.busy[name]:
            return await self._reconcile(name, wish, look_in_store)

    async def _reconcile(self, name: str, wish: dict | str | None, look_in_store: bool) -> str | None:
        if wish == UNLOADED:
            self.registry.unload(name)
            return None
        policy = VersionPolicy.model_validate(wish) if wish is not None else self.registry.policies.get(name)
        served = self.registry.models.get(name)
        if policy is None or served is not None and served.policy == policy and not (
                look_in_store and policy.follows_store):
            return None  # (a name only unloaded and loaded here, or nothing that can have changed)
        try:
            stored, held = await anyio.to_thread.run_sync(stored_versions, name)
            wanted = policy.wanted(stored, held)
        except bentoml.exceptions.NotFound:
            return f"model {name!r} is not in the store"
        except KeyError as error:
            return f"model {name!r}: {error.args[0]}"
        self._hold_back(name, {version: why for version, why in held.items() if version not in wanted})
        have = {m.version: m for m in served.served} if served is not None else {}
        if list(have) == wanted and served.policy == policy:
            return None
        loaded, problems = {}, []
        for version in wanted:
            model = have.get(version)
            if model is None:
                model, problem = await self._load(name, f"{name}:{version}")
                if problem is not None:
                    problems.append(problem)
            if model is not None:
                loaded[version] = model
        if problems:
            loaded = {**have, **loaded}  # (a failed version replaces nothing)
        order = {v: i for i, v in enumerate(wanted)}
        serving = sorted(loaded.values(), key=lambda m: order.get(m.version, len(order)))  # newest first
        if serving and (served is None or serving != served.served or served.policy != policy):
            self.registry.serve(name, ModelVersions(serving, policy))
            free_memory()  # (what loading and warming up left)
        return "; ".join(problems) or None

    def _hold_back(self, name: str, held: dict[str, str]) -> None:
        """Log and count, once per worker, each version held back by a breaking change, and list it as failed."""
        for version, why in held.items():
            tag, message = f"{name}:{version}", held_back_message(name, version, why)
            if self.failed.get(tag, (None, None))[1] != message:
                self.failed[tag] = (INCOMPATIBLE, message, ())  # (no fingerprint: a load of it is always tried)
                metrics.MODEL_LOAD_FAILURES.labels(model=name, reason=INCOMPATIBLE).inc()
                log.error("new version %s not served (%s): %s", tag, INCOMPATIBLE, message)

    async def _load(self, name: str, tag: str) -> tuple[object, str | None]:
        """(The version verified, loaded and warmed up, None), or (None, why not): a version that failed before is
        not tried again until its files change."""
        path = Path(await anyio.to_thread.run_sync(lambda: bentoml.models.get(tag).path))
        known = self.failed.get(tag)
        if known is not None and known[2] == _fingerprint(path):
            return None, known[1]
        self.loading.add(tag)
        try:
            candidate = await anyio.to_thread.run_sync(self.registry.load_version, tag)
            await self.registry.warm_up_one(candidate)
        except (ArtifactError, RuntimeError, KeyError, ValueError, OSError) as error:
            reason = reason_of(error)
            self.failed[tag] = (reason, str(error), _fingerprint(path))
            metrics.MODEL_LOAD_FAILURES.labels(model=name, reason=reason).inc()
            served = self.registry.models.get(name)
            log.error("new version %s not served (%s): %s; still serving %s", tag, reason, error,
                      ", ".join(m.version for m in served.served) if served else "nothing")
            return None, str(error)
        finally:
            self.loading.discard(tag)
        self.failed.pop(tag, None)
        log.info("%s verified, loaded and warmed up", tag)
        return candidate, None
