"""Helpers shared by test modules: reading /metrics, checking a server still serves, a local ONNX answer to compare
with, and an engine whose cost is set for the batcher's in-process tests."""

import asyncio
import json
import threading
import time
from types import SimpleNamespace

import httpx
import numpy as np
import onnxruntime

from service.batching.batcher import ModelBatcher
from service.config import ServeConfig
from service.lifecycle.versions import ModelVersions, VersionPolicy
from service.runtime.registry import EngineCallMetrics, ModelRegistry, ServedModel
from service.runtime.schema import FeatureSchema, TokenSchema


def scrape(url: str) -> dict[str, float]:
    """Samples of /metrics as {'name{labels}': value}, labels in the exporter's order."""
    samples = {}
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def total(samples: dict[str, float], prefix: str, **labels: str) -> float:
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(v for k, v in samples.items() if k.startswith(prefix + "{") and all(w in k for w in wanted))


def send(server, path: str, body, headers: dict | None = None) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(server.url + path, content=content, timeout=30,
                      headers={"Content-Type": "application/json", **(headers or {})})


def assert_still_serving(server, headers: dict | None = None) -> None:
    reply = send(server, "/v1/models/regression:predict", {"instances": [[100.0, 10.0]]}, headers)
    assert reply.status_code == 200 and len(reply.json()["predictions"]) == 1


def local_onnx(trained, name: str, batch: np.ndarray) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(trained[name]["path"] / "model.onnx"),
                                           providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: batch})[0]


class TimedEngine:
    """Returns its input's row sums; sleeps `seconds` per call, or `seconds(batch)` (time.sleep releases the GIL as
    ONNX Runtime does). Records each call's rows, thread and asyncio task."""

    backend = "onnx"
    device = "cpu"

    def __init__(self, seconds=0.0) -> None:
        self.seconds = seconds
        self.calls: list[tuple[int, int]] = []  # (rows, thread id)
        self.tasks: list[asyncio.Task | None] = []  # the task each call ran in (None: a worker thread)

    def run(self, batch: np.ndarray) -> np.ndarray:
        self.calls.append((batch.shape[0], threading.get_ident()))
        try:
            self.tasks.append(asyncio.current_task())
        except RuntimeError:  # no event loop in this thread
            self.tasks.append(None)
        seconds = self.seconds(batch) if callable(self.seconds) else self.seconds
        if seconds:
            time.sleep(seconds)
        return batch.sum(axis=1, keepdims=True).astype(np.float32)

    def device_for(self, shape: tuple[int, ...]) -> str:
        return self.device


def batcher_for(engine, max_batch_size: int = 64, **settings) -> ModelBatcher:
    """A batcher on `engine` whose cost model has seen the engine's batch-1 cost, as after warm-up."""
    batcher = ModelBatcher("dispatch-test", engine, np.concatenate,
                           ServeConfig(models=("dispatch-test",), max_batch_size=max_batch_size, **settings))
    for _ in range(5):
        batcher.run_now(np.ones((1, 2), dtype=np.float32))
    engine.calls.clear()
    engine.tasks.clear()
    return batcher


class CurveEngine(TimedEngine):
    """Costs ms_per_row[width][rows] per row: a dict by input width (token length; feature models: 2)."""

    def __init__(self, ms_per_row: dict[int, dict[int, float]], device: str = "cpu") -> None:
        super().__init__(seconds=self._seconds)
        self.ms_per_row = ms_per_row
        self.device = device
        self.lengths: list[int] = []  # of each call's batch

    def _seconds(self, batch: np.ndarray) -> float:
        rows, width = batch.shape
        self.lengths.append(width)
        curve = self.ms_per_row[min(key for key in self.ms_per_row if key >= width)]
        return curve[min(key for key in curve if key >= rows)] * rows / 1000


async def warmed_up(engine, tokens: bool = False, max_latency_ms: int = 60_000) -> ModelBatcher:
    """A registry holding one model on `engine` (max_batch_size 8), warmed up as the service does at start; the
    batcher belongs to the calling event loop."""
    config = ServeConfig(models=("curve",), max_batch_size=8, max_latency_ms=max_latency_ms)
    schema = TokenSchema(vocab_size=100, max_len=16, pad_id=0) if tokens else FeatureSchema(("a", "b"))
    batcher = ModelBatcher("curve", engine, schema.merge, config)
    registry = ModelRegistry(config)
    artifacts = SimpleNamespace(name="curve", tag="curve:test", version="test", manifest={})
    served = ServedModel(artifacts, schema, batcher, "onnx", engine.device, EngineCallMetrics("curve", "test", "onnx",
                                                                                           None))
    registry.models["curve"] = ModelVersions([served], VersionPolicy())
    await registry.warm_up()
    for each in (engine.cpu, engine.gpu) if hasattr(engine, "gpu") else (engine,):
        each.calls.clear()
        each.lengths.clear()
    return batcher
