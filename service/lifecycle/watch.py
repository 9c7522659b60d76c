"""New versions of the served models go live without a restart: each worker looks at the store every interval.

A model served as NAME:latest whose `latest` now names another version gets that version verified (the sha256 of
every file against its manifest), loaded, warmed up, and only then swapped in; requests already running finish on
the version they started on, and the old one is closed once they have. A version that fails any step leaves the
serving one untouched, is logged once with its reason, counted in modelserve_model_load_failures_total, and is not
tried again until its files change. Every worker runs its own watcher, so all of them switch within the interval.
"""

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import bentoml

from service import metrics
from service.lifecycle.desired import UNLOADED, DesiredState
from service.runtime.artifacts import ArtifactError
from service.runtime.registry import free_memory

log = logging.getLogger("modelserve")
TICK_S = 1.0  # how soon a server's other workers follow a load or unload


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
        for name in {*self.registry.refs, *wishes}:
            await self.reconcile(name, wishes.get(name), look_in_store)

    async def reconcile(self, name: str, wish: str | None, look_in_store: bool = False) -> str | None:
        """Serve what `wish` (from the repository API; None: the configured ref) asks for; why not, or None."""
        if wish == UNLOADED:
            self.registry.unload(name)
            return None
        ref = f"{name}:{wish}" if wish else self.registry.refs.get(name, f"{name}:latest")
        serving = self.registry.models.get(name)
        if wish is None and serving is not None and (not look_in_store or not ref.endswith(":latest")):
            return None  # a pinned version, or the store not watched: nothing can have changed
        try:
            model = await anyio.to_thread.run_sync(bentoml.models.get, ref)
        except bentoml.exceptions.NotFound:
            return f"model {ref!r} is not in the store"
        tag = str(model.tag)
        if serving is not None and serving.artifacts.tag == tag or tag in self.loading:
            return None
        known = self.failed.get(tag)
        if known is not None and known[2] == _fingerprint(Path(model.path)):
            return known[1]
        return await self.load(name, ref, tag, Path(model.path))

    async def load(self, name: str, ref: str, tag: str, path: Path) -> str | None:
        """Verify, load and warm up `tag`, then serve it under `name`; if any step fails, why (the serving version
        untouched)."""
        self.loading.add(tag)
        try:
            candidate = await anyio.to_thread.run_sync(self.registry.load_version, tag)
            await self.registry.warm_up_one(candidate)
        except (ArtifactError, RuntimeError, KeyError, ValueError, OSError) as error:
            reason = reason_of(error)
            self.failed[tag] = (reason, str(error), _fingerprint(path))
            metrics.MODEL_LOAD_FAILURES.labels(model=name, reason=reason).inc()
            log.error("new version %s not served (%s): %s; still serving %s", tag, reason, error,
                      self.registry.version_of(name))
            return str(error)
        finally:
            self.loading.discard(tag)
        self.failed.pop(tag, None)
        self.registry.replace(name, candidate, ref)
        free_memory()  # (what loading and warming up left)
        log.info("now serving %s", tag)
        return None
