"""The models this worker serves: loaded from the store, verified, warmed up, each behind its batcher."""

import asyncio
import contextlib
import ctypes
import gc
import logging
from dataclasses import dataclass, field

import numpy as np

from service import metrics
from service.batching.batcher import ModelBatcher
from service.config import ServeConfig
from service.errors import InvalidInput, ModelNotReady, TooManyInstances, UnknownModel
from service.runtime.artifacts import ArtifactError, ModelArtifacts, load_artifacts
from service.runtime.engines import load_engine, resolve_device
from service.runtime.schema import FeatureSchema, TokenSchema, schema_for
from service.runtime.warm_up import warm_up

log = logging.getLogger("modelserve")


@dataclass
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
        self.queue_wait = metrics.QUEUE_WAIT_SECONDS.labels(model=model).observe

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
    models: dict[str, ServedModel] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    """Configured model ref -> why it could not load; any entry keeps the service not ready."""
    refs: dict[str, str] = field(default_factory=dict)
    """Name -> the configured ref (NAME:latest, or a pinned NAME:VERSION)."""
    unloaded: set[str] = field(default_factory=set)
    """Names unloaded through the repository API: not served, and not waited for by readiness."""

    def load(self) -> None:
        for ref in self.config.model_refs:
            self.refs[ref.split(":")[0]] = ref
            try:
                self.models[ref.split(":")[0]] = self.load_version(ref)
            except (ArtifactError, RuntimeError, KeyError, ValueError) as exc:
                self.errors[ref] = str(exc)
                metrics.MODEL_READY.labels(model=ref.split(":")[0]).set(0)
                log.error("model %s not loaded: %s", ref, exc)

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
        for model in self.models.values():
            metrics.MODEL_READY.labels(model=model.name).set(0)
            await self.warm_up_one(model)
            self._announce(model)
            metrics.MODEL_READY.labels(model=model.name).set(1)

    async def warm_up_one(self, model: ServedModel) -> None:
        await warm_up(model)
        model.batcher.start_recording(model.recorder, model.recorder.queue_wait)
        model.ready = True

    def _announce(self, model: ServedModel) -> None:
        metrics.MODEL_INFO.labels(model=model.name, tag=model.artifacts.tag, backend=model.backend,
                                  device=model.device).set(1)

    def replace(self, name: str, model: ServedModel, ref: str) -> None:
        """Serve `model` (warmed up) under `name` from now on; the version it replaces closes once the requests
        that already hold it are answered."""
        old = self.models.get(name)
        self.models[name] = model
        self.refs.setdefault(name, ref)
        self.unloaded.discard(name)
        self.errors = {ref: error for ref, error in self.errors.items() if ref.split(":")[0] != name}
        self._announce(model)
        metrics.MODEL_READY.labels(model=name).set(1)
        if old is not None:
            metrics.MODEL_INFO.labels(model=name, tag=old.artifacts.tag, backend=old.backend, device=old.device).set(0)
            asyncio.get_running_loop().create_task(_retire(old.batcher))

    def unload(self, name: str) -> None:
        """Stop serving `name` (the repository API's unload); requests already holding it are answered first."""
        self.unloaded.add(name)
        self.errors = {ref: error for ref, error in self.errors.items() if ref.split(":")[0] != name}
        old = self.models.pop(name, None)
        if old is not None:
            metrics.MODEL_INFO.labels(model=name, tag=old.artifacts.tag, backend=old.backend, device=old.device).set(0)
            asyncio.get_running_loop().create_task(_retire(old.batcher))
            log.info("unloaded %s", old.artifacts.tag)

    @property
    def ready(self) -> bool:
        return not self.errors and (bool(self.models) or bool(self.unloaded)) and all(
            m.ready for m in self.models.values())

    def get(self, name: str, version: str | None = None) -> ServedModel:
        """The model, ready to serve; `version`, where a route names one, must be the one served."""
        model = self.models.get(name)
        if model is None and name in self.unloaded:
            raise UnknownModel(f"model {name!r} is unloaded; POST /v2/repository/models/{name}/load serves it again")
        if model is None:
            failed = [error for ref, error in self.errors.items() if ref.split(":")[0] == name]
            if failed:
                raise ModelNotReady(f"model {name!r} failed to load: {failed[0]}")
            raise UnknownModel(f"model {name!r} is not served here; served models: {', '.join(sorted(self.models))}")
        if version is not None and version != model.artifacts.version:
            raise UnknownModel(f"model {name!r} has no version {version!r} here; served version: "
                               f"{model.artifacts.version}")
        if not model.ready:
            raise ModelNotReady(f"model {name!r} is still warming up")
        return model

    def version_of(self, name: str) -> str | None:
        """The version served under `name`, or None."""
        model = self.models.get(name)
        return model.artifacts.version if model is not None else None

    def check_count(self, count: int) -> None:
        """Refuse oversized requests before parsing them."""
        if count > self.config.max_instances:
            raise TooManyInstances(f"{count} instances in one request; the limit is "
                                   f"{self.config.max_instances} (MODELSERVE_MAX_INSTANCES)")
        if count == 0:
            raise InvalidInput("no instances: send at least one")
