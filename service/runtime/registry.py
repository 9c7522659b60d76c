"""The models this worker serves: loaded from the store, verified, warmed up, each behind its batcher."""

import asyncio
import contextlib
import ctypes
import gc
import logging
from dataclasses import dataclass, field

import bentoml
import numpy as np

from service import metrics
from service.batching.batcher import ModelBatcher
from service.config import ServeConfig
from service.errors import InvalidInput, ModelNotReady, TooManyInstances, UnknownModel
from service.lifecycle.versions import ModelVersions, VersionPolicy, stored_versions
from service.protocol.routes import PredictionRoute
from service.runtime.artifacts import ArtifactError, ModelArtifacts, load_artifacts
from service.runtime.engines import load_engine, resolve_device
from service.runtime.schema import FeatureSchema, TokenSchema, schema_for
from service.runtime.warm_up import warm_up

log = logging.getLogger("modelserve")


@dataclass(eq=False)  # (one per loaded version: equal only to itself)
class ServedModel:
    artifacts: ModelArtifacts
    schema: FeatureSchema | TokenSchema
    batcher: ModelBatcher
    backend: str
    device: str
    recorder: "EngineCallMetrics"
    ready: bool = False

    @property
    def name(self) -> str:
        return self.artifacts.name

    @property
    def manifest(self) -> dict:
        return self.artifacts.manifest

    @property
    def version(self) -> str:
        return self.artifacts.version

    @property
    def task(self) -> str:
        return self.manifest["task"]


class EngineCallMetrics:
    """What each served engine call of one version of a model adds to the metrics: its time and rows (labelled by
    version, so that a new version's latency shows beside the old one's while it goes live), and its inputs outside
    the training range (runtime/drift.py), counted per merged batch rather than per request."""

    def __init__(self, model: str, version: str, backend: str, drift) -> None:
        self._model, self._version, self._backend, self._drift = model, version, backend, drift
        self._seconds: dict[str, object] = {}  # device -> histogram, made on first use: no empty CUDA series
        self._rows = metrics.ROWS_PER_ENGINE_CALL.labels(model=model, version=version)
        self.queue_wait = metrics.QUEUE_WAIT_SECONDS.labels(model=model, version=version).observe
        self.answered = metrics.PREDICTIONS.labels(model=model, version=version).inc  # (once per request answered)

    def __call__(self, batch: np.ndarray, device: str, seconds: float) -> None:
        histogram = self._seconds.get(device)
        if histogram is None:
            histogram = self._seconds[device] = metrics.INFERENCE_SECONDS.labels(
                model=self._model, version=self._version, backend=self._backend, device=device)
        histogram.observe(seconds)
        self._rows.observe(batch.shape[0])
        if self._drift is not None:
            self._drift.observe(batch)


async def _retire(batcher: ModelBatcher) -> None:
    """Close a version no longer served, once its requests are answered, and give its memory back."""
    await batcher.close()
    del batcher
    free_memory()


def free_memory() -> None:
    """Collect what a replaced version leaves, and give the heap's free pages back to the system.

    The batcher and its queue refer to each other: only a full collection frees them, with the engine and its
    weights, and with little allocation going on that can be long in coming. glibc keeps freed pages per thread
    arena, and versions load in threads. Measured, 20 load/unload cycles of a 16 MB model took two workers from
    208 to 470 MB with neither, to 258 MB with the collection alone."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # (not glibc)
        ctypes.CDLL("libc.so.6").malloc_trim(0)


@dataclass
class ModelRegistry:
    config: ServeConfig
    models: dict[str, ModelVersions] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    """Configured model name -> why it could not load; any entry keeps the service not ready."""
    unloaded: set[str] = field(default_factory=set)
    """Names unloaded through the repository API: not served, and not waited for by readiness."""

    @property
    def policies(self) -> dict[str, VersionPolicy]:
        """Each configured model's version policy."""
        return self.config.version_policies

    def load(self) -> None:
        for name, policy in self.policies.items():
            for reason in metrics.LOAD_FAILURE_REASONS:
                metrics.MODEL_LOAD_FAILURES.labels(model=name, reason=reason)
            try:
                versions = policy.wanted(*stored_versions(name))
                self.models[name] = ModelVersions([self.load_version(f"{name}:{v}") for v in versions], policy)
            except bentoml.exceptions.NotFound:
                self._failed(name, ArtifactError(f"model {name!r} is not in the model store", "not_found"))
            except (ArtifactError, RuntimeError, KeyError, ValueError) as exc:
                self._failed(name, exc)

    def _failed(self, name: str, error: Exception) -> None:
        self.errors[name] = str(error)
        metrics.MODEL_READY.labels(model=name).set(0)
        log.error("model %s not loaded: %s", name, error)

    def load_version(self, ref: str) -> ServedModel:
        """Find, verify and load one version; not yet warmed up or served."""
        artifacts = load_artifacts(ref)
        config = self.config
        device = resolve_device(config.device)
        engine = load_engine(config.backend, artifacts.path, device, config.engine_threads, config.tf32,
                             config.small_batches_on_cpu)
        schema = schema_for(artifacts.name, artifacts.manifest)
        recorder = EngineCallMetrics(artifacts.name, artifacts.version, config.backend,
                                     schema.drift(artifacts.name, artifacts.manifest))
        batcher = ModelBatcher(artifacts.name, engine, schema.merge, config)
        log.info("loaded %s (%s on %s)", artifacts.tag, config.backend, device)
        return ServedModel(artifacts, schema, batcher, config.backend, device, recorder)

    async def warm_up(self) -> None:
        for name, versions in self.models.items():
            metrics.MODEL_READY.labels(model=name).set(0)
            for model in versions.served:
                await self.warm_up_one(model)
                self._announce(model, 1)
            metrics.MODEL_READY.labels(model=name).set(1)

    async def warm_up_one(self, model: ServedModel) -> None:
        await warm_up(model)
        model.batcher.start_recording(model.recorder, model.recorder.queue_wait)
        model.ready = True

    def _announce(self, model: ServedModel, loaded: int) -> None:
        metrics.MODEL_INFO.labels(model=model.name, tag=model.artifacts.tag, backend=model.backend,
                                  device=model.device).set(loaded)

    def serve(self, name: str, versions: ModelVersions) -> None:
        """Serve `versions` (warmed up) under `name` from now on; each version no longer among them closes once the
        requests that already hold it are answered."""
        old = self.models.get(name)
        self.models[name] = versions
        self.unloaded.discard(name)
        self.errors.pop(name, None)
        for model in versions.served:
            self._announce(model, 1)
        metrics.MODEL_READY.labels(model=name).set(1)
        log.info("now serving %s", ", ".join(m.artifacts.tag for m in versions.served))
        for model in old.served if old is not None else ():
            if model not in versions.served:
                self._retire(model)

    def unload(self, name: str) -> None:
        """Stop serving `name` (the repository API's unload); requests already holding it are answered first."""
        self.unloaded.add(name)
        self.errors.pop(name, None)
        for model in self.models.pop(name).served if name in self.models else ():
            self._retire(model)
            log.info("unloaded %s", model.artifacts.tag)

    def _retire(self, model: ServedModel) -> None:
        self._announce(model, 0)
        asyncio.get_running_loop().create_task(_retire(model.batcher))

    @property
    def ready(self) -> bool:
        return not self.errors and (bool(self.models) or bool(self.unloaded)) and all(
            m.ready for versions in self.models.values() for m in versions.served)

    def versions_of(self, name: str) -> ModelVersions:
        """The versions served under `name`; refuses a name not served."""
        versions = self.models.get(name)
        if versions is not None:
            return versions
        if name in self.unloaded:
            raise UnknownModel(f"model {name!r} is unloaded; POST /v2/repository/models/{name}/load serves it again")
        if name in self.errors:
            raise ModelNotReady(f"model {name!r} failed to load: {self.errors[name]}")
        raise UnknownModel(f"model {name!r} is not served here; served models: {', '.join(sorted(self.models))}")

    def get(self, name: str, version: str | None = None) -> ServedModel:
        """The model, ready to serve: the version named, else the newest served."""
        versions = self.versions_of(name)
        return self._ready(name, versions.newest if version is None else self._version(name, versions, version))

    def route(self, route: PredictionRoute) -> tuple[ServedModel, ServedModel | None]:
        """The version that answers a prediction (the one its path names, else by the model's traffic split), and
        the shadow candidate that also gets it, or None."""
        versions = self.versions_of(route.model)
        if route.version is not None:
            return self._ready(route.model, self._version(route.model, versions, route.version)), None
        model = self._ready(route.model, versions.route(route.routing_key))
        return model, versions.shadow_for(model)

    @staticmethod
    def _version(name: str, versions: ModelVersions, version: str) -> ServedModel:
        model = versions.find(version)
        if model is None:
            served = ", ".join(m.artifacts.version for m in versions.served)
            raise UnknownModel(f"model {name!r} has no version {version!r} here; served versions: {served}")
        return model

    @staticmethod
    def _ready(name: str, model: ServedModel) -> ServedModel:
        if not model.ready:
            raise ModelNotReady(f"model {name!r} is still warming up")
        return model

    def check_count(self, count: int) -> None:
        """Refuse oversized requests before parsing them."""
        if count > self.config.max_instances:
            raise TooManyInstances(f"{count} instances in one request; the limit is "
                                   f"{self.config.max_instances} (MODELSERVE_MAX_INSTANCES)")
        if count == 0:
            raise InvalidInput("no instances: send at least one")
