"""The systems the serving benchmark loads, by key: modelserve in its configurations (here) and the peers users
would pick (peer_systems.py), on what system_base.py holds in common.
"""

import json
import os
import shutil
import sys
from pathlib import Path

import httpx
import numpy as np
from peer_systems import (
    FastapiPeer,
    HttpCeiling,
    KservePeer,
    LitservePeer,
    MlserverPeer,
    RayServePeer,
    StockBentoml,
    TritonPeer,
)
from system_base import (
    BENCH,
    EXAMPLE,
    REPO,
    WORKERS,
    Framed,
    ServeConfig,
    System,
    _modelserve_env,
    _v2_tensor,
    peer_venv,
    served_device,
)

__all__ = ["BENCH", "EXAMPLE", "REPO", "WORKERS", "Framed", "System", "peer_venv", "served_device", "SYSTEMS",
           "GPU_ONLY", "Modelserve"]


def modelserve_label(mode: str, settings: dict[str, str]) -> str:
    """What a modelserve server will run, as the service itself reads it: the settings the system gives over
    MODELSERVE_* already exported. A MODELSERVE_BACKEND or _DEVICE set for a whole run shows in the results
    instead of hiding behind the system's defaults ('auto' is named as the device it resolves to)."""
    config = ServeConfig.from_env({**os.environ, **_modelserve_env(settings)})
    workers = f"{config.workers} worker{'s' if config.workers > 1 else ''}"
    return f"modelserve ({mode}, {config.backend}, {served_device(settings)}, {workers})"


class Modelserve(System):
    def __init__(self, mode: str, **settings: str) -> None:
        super().__init__(modelserve_label(mode, settings), has_metrics=True)
        self.settings = settings

    def start(self, dirs: dict[str, Path], models: list[str]) -> None:
        env = _modelserve_env({"models": ",".join(models), **self.settings})
        self._spawn([sys.executable, "-m", "training.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                    env)

    @staticmethod
    def _predictions(response: httpx.Response) -> list:  # classifiers: {"label", "probabilities": {class: p}}
        return [list(p["probabilities"].values()) if isinstance(p, dict) else p for p in response.json()["predictions"]]


class ModelserveAt(Modelserve):
    """modelserve as another checkout has it (BENCH_BEFORE: its path, e.g. a `git worktree` of an earlier commit),
    with the same settings, store and Python environment: the code is the one difference, for before/after pairs."""

    def __init__(self, **settings: str) -> None:
        self.checkout = Path(os.environ.get("BENCH_BEFORE", ""))
        if not (self.checkout / "service").is_dir():
            raise SystemExit("modelserve-before needs BENCH_BEFORE=<a checkout of the commit to compare with>")
        super().__init__(f"as at {self.checkout.name}", **settings)

    def start(self, dirs: dict[str, Path], models: list[str]) -> None:
        env = _modelserve_env({"models": ",".join(models), **self.settings})
        self._spawn([sys.executable, "-m", "training.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                    {**env, "PYTHONPATH": str(self.checkout)}, cwd=self.checkout)


class ModelserveShadow(Modelserve):
    """modelserve answering from each model's latest version while a copy of every request (or of `share` of them)
    also goes to a shadow candidate: the latest version's files saved again under another version, so the candidate
    costs what a retrained version of the same size would (the client's p99 with and without it, side by side)."""

    def __init__(self, share: float = 1.0, **settings: str) -> None:
        super().__init__("batched, every request shadowed" if share == 1.0 else f"batched, {share:.0%} shadowed",
                         **settings)
        self.share = share

    def start(self, dirs: dict[str, Path], models: list[str]) -> None:
        policy = {}
        for model in models:
            version = dirs[model].name
            candidate = dirs[model].parent / f"{version[:12]}shadow"
            if not candidate.exists():
                shutil.copytree(dirs[model], candidate)
                model_yaml = candidate / "model.yaml"
                model_yaml.write_text(model_yaml.read_text().replace(version, candidate.name))
            policy[model] = {"versions": [version, candidate.name], "weights": {version: 1},
                             "shadow": candidate.name, "shadow_share": self.share}
        self.settings = {**self.settings, "version_policy": json.dumps(policy)}
        super().start(dirs, models)



class ModelserveV2(Modelserve):
    """modelserve asked through the Open Inference Protocol: JSON tensors, or binary ones (Triton's extension)."""

    def __init__(self, mode: str, binary: bool, **settings: str) -> None:
        super().__init__(mode, **settings)
        self.binary = binary

    def request(self, model: str, k: int = 1) -> tuple[str, dict | Framed]:
        path = f"/v2/models/{model}/infer"
        tensor, values = _v2_tensor(model, k, "input_ids" if model.startswith("transformer") else "features")
        if not self.binary:
            return path, {"inputs": [{**tensor, "data": values.ravel().tolist()}]}
        raw = values.tobytes()
        header = json.dumps({"inputs": [{**tensor, "parameters": {"binary_data_size": len(raw)}}],
                             "parameters": {"binary_data_output": True}}).encode()
        return path, Framed(header + raw, {"Inference-Header-Content-Length": str(len(header))})

    @staticmethod
    def _predictions(response: httpx.Response) -> list:
        length = response.headers.get("inference-header-content-length")
        if length is None:
            return response.json()["outputs"][0]["data"]
        first = json.loads(response.content[:int(length)])["outputs"][0]  # its bytes come first after the header
        size = first["parameters"]["binary_data_size"]
        return np.frombuffer(response.content[int(length):int(length) + size], dtype="<f4").tolist()



SYSTEMS = {
    "modelserve": lambda: Modelserve("batched", workers=WORKERS),
    "modelserve-torchscript": lambda: Modelserve("batched", backend="torchscript", workers=WORKERS),
    "modelserve-unbatched": lambda: Modelserve("unbatched", batching="false", workers=WORKERS),
    "modelserve-cuda-only": lambda: Modelserve("batched, every call on the GPU", small_batches_on_cpu="false",
                                               workers=WORKERS),
    "modelserve-v2-json": lambda: ModelserveV2("v2 JSON tensors", binary=False, workers=WORKERS),
    "modelserve-v2-binary": lambda: ModelserveV2("v2 binary tensors", binary=True, workers=WORKERS),
    "modelserve-1w": lambda: Modelserve("batched", workers="1"),
    "modelserve-before": lambda: ModelserveAt(workers=WORKERS),
    "modelserve-batch-8": lambda: Modelserve("batched, at most 8 rows a call", max_batch_size="8", workers=WORKERS),
    "modelserve-shadow": lambda: ModelserveShadow(workers=WORKERS),
    "modelserve-shadow-10": lambda: ModelserveShadow(share=0.1, workers=WORKERS),
    "stock-bentoml": lambda: StockBentoml(f"stock BentoML (batched, {WORKERS} workers)"),
    "fastapi": lambda: FastapiPeer(f"FastAPI + ORT (hand-written, {WORKERS} uvicorn workers)"),
    "ray-serve": lambda: RayServePeer(f"Ray Serve (@serve.batch, {WORKERS} replicas a model)"),
    "mlserver": lambda: MlserverPeer(f"MLServer (adaptive batching, {WORKERS} parallel workers)"),
    "litserve": lambda: LitservePeer(f"LitServe (batching, fast_queue, {WORKERS} workers)"),
    "kserve": lambda: KservePeer(f"KServe ModelServer (no batching, {WORKERS} workers)"),
    "triton": lambda: TritonPeer(f"Triton via PyTriton (dynamic batching, {WORKERS} instances a model)"),
    "http-ceiling": lambda: HttpCeiling(f"HTTP ceiling (uvicorn, canned answer, {WORKERS} workers)"),
}
GPU_ONLY = {"modelserve-cuda-only"}
"""Systems that differ from `modelserve` only on a GPU; a run on the CPU leaves them out unless named."""
