"""Service settings, read once from MODELSERVE_* environment variables (the `modelserve serve` flags set them)."""

import os
from dataclasses import dataclass, fields

DEFAULT_MODELS = ("regression:latest", "mlp:latest", "transformer:latest")
ENV_PREFIX = "MODELSERVE_"


@dataclass(frozen=True)
class ServeConfig:
    models: tuple[str, ...] = DEFAULT_MODELS
    """Model store tags to serve, comma-separated in the environment; a bare name means NAME:latest."""
    backend: str = "onnx"
    """'onnx' (ONNX Runtime) or 'torchscript'."""
    device: str = "auto"
    """'auto' (CUDA when present), 'cpu' or 'cuda'."""
    max_batch_size: int = 64
    """Most rows in one engine call; larger requests are split across calls."""
    max_latency_ms: int = 60_000
    """The batcher answers 503 for a request it predicts cannot finish within this. BentoML's own default:
    its prediction extrapolates a per-request cost learned under load, and with 10 s it shed part of a
    burst of 2,000 concurrent requests on a busy 2-core machine."""
    batching: bool = True
    """Adaptive batching across requests; off, each request is its own engine call (split above max_batch_size)."""
    measure_batch_limit: bool = True
    """Warm-up times the engine at each batch size and merges no more rows than still lower the cost per row
    (service/batch_limit.py); off, batches grow to max_batch_size."""
    max_instances: int = 1024
    """Most instances (rows) in one request; more is a 400."""
    max_body_bytes: int = 8 * 1024 * 1024
    """Largest request body; more is a 413."""
    api_key: str | None = None
    """If set, prediction routes need `Authorization: Bearer <key>`."""
    tracing: bool = False
    """OpenTelemetry spans for prediction and health routes. Off by default: with no exporter configured a
    span per request is pure cost (about 12 % of a loaded worker's time)."""
    workers: int = 1
    """Worker processes, each with its own copy of the models."""
    engine_threads: int = 1
    """CPU threads per engine call (per worker)."""
    tf32: bool = True
    """On CUDA, let float32 matrix products use TF32 tensor cores (ONNX Runtime's CUDA provider does by default).
    Measured on an H200 (2026-11-22): the heavy transformer's ONNX engine at batch 64 ran 1.64x faster with it;
    the trained default transformer's probabilities moved from the CPU's by up to 5.7e-4 (random weights: 2.7e-5
    with it, 6e-8 without). False: full float32."""
    log_format: str = "text"
    """'text', or 'json': one JSON object per log line, and an access line per request with its id, model,
    version, status and duration (service/request_log.py). The container and the manifests set json."""
    max_queue: int = 2048
    """Most requests of one model waiting for or in its engine, per worker; beyond it a request is refused at
    once with 429 and Retry-After instead of waiting. Large enough that a burst of 2,000 is served whole."""
    small_batches_on_cpu: bool = True
    """On CUDA, load each model on the CPU as well and run there the batch sizes warm-up measured faster on it
    (engines.SmallBatchesOnCpu): a lone request skips the GPU's per-call floor. False: every call on CUDA."""

    def __post_init__(self) -> None:
        problems = []
        if not self.models:
            problems.append("models must name at least one model")
        if self.backend not in ("onnx", "torchscript"):
            problems.append(f"backend must be onnx or torchscript, got {self.backend!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            problems.append(f"device must be auto, cpu or cuda, got {self.device!r}")
        if self.log_format not in ("text", "json"):
            problems.append(f"log_format must be text or json, got {self.log_format!r}")
        for name in ("max_batch_size", "max_latency_ms", "max_instances", "max_body_bytes", "workers",
                     "engine_threads", "max_queue"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_batch_size < 2:
            problems.append("max_batch_size must be >= 2 for batching to mean anything")
        if self.api_key is not None and len(self.api_key) < 16:
            problems.append("api_key must be at least 16 characters")
        if problems:
            raise ValueError("invalid modelserve settings: " + "; ".join(problems))

    @property
    def model_refs(self) -> tuple[str, ...]:
        return tuple(m if ":" in m else f"{m}:latest" for m in self.models)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "ServeConfig":
        env = os.environ if env is None else env
        values: dict = {}
        for field in fields(cls):
            raw = env.get(ENV_PREFIX + field.name.upper())
            if raw is None or raw == "":
                continue
            if field.name == "models":
                values["models"] = tuple(m.strip() for m in raw.split(",") if m.strip())
            elif field.type in (bool, "bool"):
                if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(f"{ENV_PREFIX}{field.name.upper()} must be true or false, got {raw!r}")
                values[field.name] = raw.lower() in ("true", "1", "yes")
            elif field.type in (int, "int"):
                try:
                    values[field.name] = int(raw)
                except ValueError:
                    raise ValueError(f"{ENV_PREFIX}{field.name.upper()} must be an integer, got {raw!r}") from None
            else:
                values[field.name] = raw
        return cls(**values)
