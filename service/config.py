"""Service settings, read once from MODELSERVE_* environment variables (the `modelserve serve` flags set them)."""

import json
from typing import Annotated, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from service.lifecycle.versions import VersionPolicy

DEFAULT_MODELS = ("regression:latest", "mlp:latest", "transformer:latest")
ENV_PREFIX = "MODELSERVE_"
Positive = Annotated[int, Field(ge=1)]


class ServeConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_ignore_empty=True, frozen=True,
                                      use_attribute_docstrings=True)

    models: Annotated[tuple[str, ...], NoDecode, Field(min_length=1)] = DEFAULT_MODELS
    """Model store tags to serve, comma-separated in the environment; a bare name means NAME:latest."""
    backend: Literal["onnx", "torchscript"] = "onnx"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """'auto': CUDA when present."""
    max_batch_size: Annotated[int, Field(ge=2)] = 64
    """Most rows in one engine call; larger requests are split across calls. For a model that keeps a core busy
    with one row, fewer rows cost less per row (benchmarks/profiling.md: the heavy transformer on 2 cores)."""
    max_latency_ms: Positive = 60_000
    """A request predicted to finish later than this is refused with 503 (BentoML's own default: with 10 s, part of
    a burst of 2,000 concurrent requests was shed on a busy 2-core machine)."""
    batching: bool = True
    """Adaptive batching across requests; off, each request is its own engine call (split above max_batch_size)."""
    max_instances: Positive = 1024
    """Most instances (rows) in one request; more is a 400."""
    max_body_bytes: Positive = 8 * 1024 * 1024
    """Largest request body; more is a 413."""
    api_key: Annotated[str | None, Field(min_length=16)] = None
    """If set, prediction routes need `Authorization: Bearer <key>`."""
    tracing: bool = False
    """OpenTelemetry spans for prediction and health routes; with no exporter a span per request is pure cost
    (about 12 % of a loaded worker's time)."""
    workers: Positive = 1
    """Worker processes, each with its own copy of the models."""
    engine_threads: Positive = 1
    """CPU threads per engine call (per worker)."""
    tf32: bool = True
    """On CUDA, let float32 matrix products use TF32 tensor cores, as ONNX Runtime's CUDA provider does by default
    (the heavy transformer at batch 64: 1.64x faster on an H200; probabilities within 5.7e-4 of the CPU's)."""
    log_format: Literal["text", "json"] = "text"
    """'json': one JSON object per log line and an access line per request (http/request_log.py)."""
    max_queue: Positive = 2048
    """Most requests of one model waiting for or in its engine, per worker; beyond it, 429 and Retry-After at once."""
    watch_seconds: Annotated[float | None, Field(gt=0)] = None
    """Look at the store this often for a new version of each model served as NAME:latest, and serve it once verified
    and warmed up (service/lifecycle/watch.py); unset: the versions loaded at start are served until a restart."""
    version_policy: dict[str, VersionPolicy] = Field(default_factory=dict)
    """Per model, the versions served and the traffic among them, as JSON, for example
    {"mlp": {"latest": 2, "weights": {"latest": 10, "previous": 90}}} (service/lifecycle/versions.py); a model not
    named serves its one configured version."""
    small_batches_on_cpu: bool = True
    """On CUDA, also load each model on the CPU and run there the batch sizes warm-up measured faster on it."""

    @field_validator("models", mode="before")
    @classmethod
    def _comma_separated(cls, value):
        return tuple(m.strip() for m in value.split(",") if m.strip()) if isinstance(value, str) else value

    @field_validator("version_policy", mode="before")
    @classmethod
    def _json(cls, value):
        return json.loads(value) if isinstance(value, str) else value

    @field_validator("version_policy")
    @classmethod
    def _names_models_served_as_latest(cls, value: dict, info: ValidationInfo) -> dict:
        models = info.data.get("models", DEFAULT_MODELS)
        for name in value:
            if name not in models and f"{name}:latest" not in models:
                raise ValueError(f"names {name!r}, which is not served as {name}:latest (MODELSERVE_MODELS: "
                                 f"{', '.join(models)})")
        return value

    @property
    def model_refs(self) -> tuple[str, ...]:
        return tuple(m if ":" in m else f"{m}:latest" for m in self.models)

    @property
    def version_policies(self) -> dict[str, VersionPolicy]:
        """Each served model's policy: the configured one, else its one version (the latest, or the one pinned)."""
        policies = {}
        for ref in self.model_refs:
            name, version = ref.split(":", 1)
            policies[name] = self.version_policy.get(name) or (
                VersionPolicy() if version == "latest" else VersionPolicy(versions=(version,)))
        return policies

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "ServeConfig":
        """The settings from `env` (default: the process's environment), or one error naming every bad value."""
        try:
            if env is None:
                return cls()
            return cls.model_validate({name: env[ENV_PREFIX + name.upper()] for name in cls.model_fields
                                       if env.get(ENV_PREFIX + name.upper())})
        except ValidationError as error:
            problems = [f"{ENV_PREFIX}{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}"
                        + ("" if e["loc"][0] == "api_key" else f", got {e['input']!r}") for e in error.errors()]
            raise ValueError("invalid modelserve settings: " + "; ".join(problems)) from None
