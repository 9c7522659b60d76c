"""The models this worker serves: loaded from the store, verified, warmed up, each behind its batcher."""

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

import numpy as np

from models.columns import Column
from service import metrics
from service.artifacts import ArtifactError, ModelArtifacts, load_artifacts
from service.batch_limit import (
    ANY_LENGTH,
    BatchLimits,
    cost_per_row,
    describe,
    efficient_batch_limit,
    machine_to_itself,
    rows_faster_on_cpu,
)
from service.batching import ModelBatcher
from service.config import ServeConfig
from service.engines import SmallBatchesOnCpu, load_engine, resolve_device
from service.errors import InvalidInput, ModelNotReady, TooManyInstances, UnknownModel
from service.inputs import FeatureSchema, TokenSchema
from service.training_range import TokenTrainingRange, TrainingRange

log = logging.getLogger("modelserve")


@dataclass
class ServedModel:
    artifacts: ModelArtifacts
    schema: FeatureSchema | TokenSchema
    batcher: ModelBatcher
    backend: str
    device: str
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

    @property
    def is_tokens(self) -> bool:
        return self.manifest["input_kind"] == "tokens"


def _by_length(model: ServedModel, batches: list[np.ndarray]) -> dict[int, list[np.ndarray]]:
    """The batches by length bucket, ascending: token models by their width, feature models all at ANY_LENGTH."""
    by_length: dict[int, list[np.ndarray]] = {}
    for batch in batches:
        by_length.setdefault(batch.shape[1] if model.is_tokens else ANY_LENGTH, []).append(batch)
    return dict(sorted(by_length.items()))


@dataclass
class ModelRegistry:
    config: ServeConfig
    models: dict[str, ServedModel] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    """Configured model ref -> why it could not load; any entry keeps the service not ready."""

    def load(self) -> None:
        device = resolve_device(self.config.device)
        for ref in self.config.model_refs:
            try:
                self.models[ref.split(":")[0]] = self._load_one(ref, device)
            except (ArtifactError, RuntimeError, KeyError, ValueError) as exc:
                self.errors[ref] = str(exc)
                metrics.MODEL_READY.labels(model=ref.split(":")[0]).set(0)
                log.error("model %s not loaded: %s", ref, exc)

    def _load_one(self, ref: str, device: str) -> ServedModel:
        artifacts = load_artifacts(ref)
        manifest = artifacts.manifest
        engine = load_engine(self.config.backend, artifacts.path, device, self.config.engine_threads,
                             self.config.tf32, self.config.small_batches_on_cpu)
        if manifest["input_kind"] == "tokens":
            spec = manifest["inputs"][0]
            schema = TokenSchema(vocab_size=spec["vocab_size"], max_len=spec["max_len"], pad_id=spec["pad_id"])
            pad_id = schema.pad_id
            training_range = TokenTrainingRange.from_manifest(artifacts.name, manifest)
        else:
            columns = manifest.get("columns")  # (absent from models trained before columns had kinds)
            schema = FeatureSchema(tuple(manifest["feature_names"]),
                                   None if columns is None else tuple(Column.from_dict(c) for c in columns),
                                   metrics.INPUTS_OUTSIDE_TRAINING_RANGE.labels(model=artifacts.name,
                                                                                feature="unseen_category"))
            pad_id = None
            training_range = TrainingRange.from_manifest(artifacts.name, schema.names, manifest)
        metrics.MODEL_READY.labels(model=artifacts.name).set(0)  # until warmed up
        batcher = ModelBatcher(artifacts.name, engine, self.config.backend, pad_id, self.config.max_batch_size,
                               self.config.max_latency_ms, self.config.batching, training_range,
                               max_queue=self.config.max_queue)
        metrics.MODEL_INFO.labels(model=artifacts.name, tag=artifacts.tag, backend=self.config.backend,
                                  device=device).set(1)
        log.info("loaded %s (%s on %s)", artifacts.tag, self.config.backend, device)
        return ServedModel(artifacts, schema, batcher, self.config.backend, device)

    async def warm_up(self) -> None:
        """One engine call per batch-size bucket (and length bucket for tokens), the batch limit measured
        (batch_limit.py; on CUDA first which batch sizes the CPU twin runs faster), then a few calls through
        the batcher so it has measured the engine before real traffic arrives. While measuring, the worker has
        the machine to itself."""
        measuring = self.config.batching and self.config.measure_batch_limit
        splitting = any(isinstance(m.batcher.engine, SmallBatchesOnCpu) for m in self.models.values())
        with machine_to_itself() if measuring or splitting else contextlib.nullcontext():
            for model in self.models.values():
                await self._warm_up_one(model, measuring)

    async def _warm_up_one(self, model: ServedModel, measuring: bool) -> None:
        sizes = sorted({1 << k for k in range(self.config.max_batch_size.bit_length())}
                       | {self.config.max_batch_size})
        sizes = [s for s in sizes if s <= self.config.max_batch_size]
        examples = [batch for rows in sizes for batch in self._examples(model, rows)]
        for batch in examples:
            model.batcher.infer_direct(batch)
        engine = model.batcher.engine
        if isinstance(engine, SmallBatchesOnCpu):  # (before the batch limit: that is timed on the split engine)
            engine.cpu_rows = self._measure_cpu_rows(model, engine, examples)
        model.batcher.limit_batches(self._measure_batch_limits(model, examples) if measuring
                                    else BatchLimits.fixed(self.config.max_batch_size))
        one = self._examples(model, 1)[0]
        for concurrent in (1, 1, 1, 2, 4, 8, 16, 1, 2, 4, 8, 16):  # batches of several sizes to fit to
            await asyncio.gather(*(model.batcher.infer(one) for _ in range(concurrent)))
        model.batcher.calibrate()
        model.batcher.recording = True
        model.ready = True
        metrics.MODEL_READY.labels(model=model.name).set(1)

    @staticmethod
    def _measure_batch_limits(model: ServedModel, examples: list[np.ndarray]) -> BatchLimits:
        """Time the engine on the warm-up batches, each token length bucket apart; see batch_limit.py."""
        limits = {}
        for length, batches in _by_length(model, examples).items():
            costs = cost_per_row(model.batcher.infer_direct, batches)
            limits[length] = efficient_batch_limit(costs)
            log.info("%s%s: at most %d rows per engine call; ms per row by batch size: %s", model.name,
                     f" ({length} tokens)" if length else "", limits[length], describe(costs))
        return BatchLimits(limits)

    @staticmethod
    def _measure_cpu_rows(model: ServedModel, engine: SmallBatchesOnCpu, examples: list[np.ndarray]) -> BatchLimits:
        """Per length bucket, the largest batch the CPU twin runs faster than CUDA (batch_limit.py)."""
        rows = {length: rows_faster_on_cpu(engine.cpu.run, engine.gpu.run, batches)
                for length, batches in _by_length(model, examples).items()}
        log.info("%s: batches of up to %s rows run on the CPU, faster there than on %s", model.name,
                 ", ".join(f"{n}" + (f" ({length} tokens)" if length else "") for length, n in rows.items()),
                 engine.device)
        return BatchLimits(rows)

    @staticmethod
    def _examples(model: ServedModel, rows: int) -> list[np.ndarray]:
        if isinstance(model.schema, TokenSchema):
            max_len = model.schema.max_len
            widths = sorted({min(max_len, 1 << k) for k in range(3, max_len.bit_length() + 1)})
            return [np.full((rows, width), model.schema.pad_id + 5, dtype=np.int64) for width in widths]
        return [np.zeros((rows, len(model.schema.names)), dtype=np.float32)]

    @property
    def ready(self) -> bool:
        return not self.errors and bool(self.models) and all(m.ready for m in self.models.values())

    def get(self, name: str, version: str | None = None) -> ServedModel:
        """The model, ready to serve; `version`, where a route names one, must be the one served."""
        model = self.models.get(name)
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
