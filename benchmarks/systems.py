"""The systems the serving benchmark loads: modelserve in its configurations and the peers users would pick.

Each system starts on 127.0.0.1 (peers in their own virtual environments, which do not share pins with
bentoml), says how a request of k instances looks for it, and stops its whole process group.
"""

import contextlib
import json
import os
import shutil
import site
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script from benchmarks/: the service's own settings parser is one import away

from service.config import ServeConfig  # noqa: E402
from service.runtime.engines import resolve_device  # noqa: E402

BENCH = REPO / "benchmarks"
VENVS = BENCH / ".venvs"
LOGS = BENCH / ".logs"  # each server's output, for when one fails to start
WORKERS = os.environ.get("MODELSERVE_BENCH_WORKERS", str(os.cpu_count() or 1))
"""Service workers: one per core, the configuration this benchmark recommends on a CPU; on a GPU machine with many
cores, fewer (each worker holds its own copy of the models on the one GPU)."""
DEBIAN_PYTHON = "/usr/bin/python3.11"
PEER_WHEELS = os.environ.get("MODELSERVE_BENCH_PEER_WHEELS")
"""A directory of wheels, for a machine that cannot reach a package index (a lent GPU node): the peers'
environments then see the machine's own packages (its numpy, torch with the CUDA libraries, onnxruntime) and
get every wheel here on top, as they are, without resolving."""

# One instance of each model, as a client would send it. Token models get byte tokens (ByteTokenizer ids).
_PATTERN = "xqazbk"
EXAMPLE = {"regression": [120.0, 15.0], "mlp": [0.5],
           "transformer": [ord(c) + 4 for c in (_PATTERN * 6)[:32]],          # 32 tokens
           "transformer-heavy": [ord(c) + 4 for c in (_PATTERN * 22)[:128]]}  # 128 tokens


@dataclass(frozen=True)
class Framed:
    """A request body that is not a JSON document: its bytes and the headers that say how to read them."""

    content: bytes
    headers: dict[str, str] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, process: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: server exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"{url} did not come up in {timeout:.0f} s")


def peer_venv(name: str, packages: list[str], base_python: str = sys.executable) -> Path:
    """A peer's own virtual environment; made once from the package index, kept in .venvs/. With uv (the dev
    extra installs it beside this Python) that takes 2-3 s a peer, where pip took ~40 s for Ray Serve's:
    on a fresh clone the test suite makes all three. Offline, from PEER_WHEELS instead (`packages` unused)."""
    venv = VENVS / (f"{name}-wheels" if PEER_WHEELS else name)
    python = venv / "bin" / "python"
    if not (venv / ".ready").exists():
        print(f"making the {name} peer's virtual environment in {venv}", flush=True)
        uv = Path(sys.executable).parent / "uv"
        if PEER_WHEELS:
            wheels = sorted(str(w) for w in Path(PEER_WHEELS).glob("*.whl"))
            # No pip inside (this Python's pip installs into it, so ensurepip need not be there), and this Python's
            # own packages after the wheels on its path: --system-site-packages would show the base interpreter's
            # instead where this Python is itself a virtual environment.
            subprocess.run([sys.executable, "-m", "venv", "--clear", "--without-pip", str(venv)], check=True)
            site_dir = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
            (site_dir / "_machine_packages.pth").write_text("\n".join(site.getsitepackages()) + "\n")
            subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--target",
                            str(site_dir), *wheels], check=True)
        elif uv.exists():
            subprocess.run([str(uv), "venv", "-q", "--clear", "--python", base_python, str(venv)], check=True)
            subprocess.run([str(uv), "pip", "install", "-q", "--python", str(python), *packages], check=True)
        else:
            subprocess.run([base_python, "-m", "venv", "--clear", str(venv)], check=True)
            subprocess.run([str(python), "-m", "pip", "install", "-q", *packages], check=True)
        (venv / ".ready").touch()
    return python


def _onnx_specs(dirs: dict[str, Path], models: list[str]) -> list[str]:
    return [f"{m}={dirs[m] / 'model.onnx'}" for m in models]


@dataclass
class System:
    name: str
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    has_metrics: bool = False
    one_model_at_a_time: bool = False
    log: Path | None = None
    """The server's output, once started (one file per start: the port is in its name)."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, dirs: dict[str, Path], models: list[str]) -> None:
        raise NotImplementedError

    def request(self, model: str, k: int = 1) -> tuple[str, dict | Framed]:
        """(path, body: JSON, or Framed bytes) of one request carrying k instances of the model's example."""
        return f"/v1/models/{model}:predict", {"instances": [EXAMPLE[model]] * k}

    def answer(self, model: str) -> list[float]:
        """The system's prediction for one example, flattened: the benchmark checks it against the raw engine."""
        path, body = self.request(model)
        if isinstance(body, Framed):
            response = httpx.post(self.url + path, content=body.content, headers=body.headers, timeout=30)
        else:
            response = httpx.post(self.url + path, json=body, timeout=30)
        response.raise_for_status()
        return list(np.ravel(self._predictions(response)))

    @staticmethod
    def _predictions(response: httpx.Response) -> list:
        return response.json()["predictions"]

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait()
        if self.process:
            # what the server left in its process group once it exited (PyTriton's tritonserver takes 30 s and more
            # to drain after SIGTERM), so the next system starts on idle cores
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, 9)

    def _spawn(self, command: list[str], env: dict | None = None, health: str = "/readyz", cwd: Path = REPO) -> None:
        LOGS.mkdir(parents=True, exist_ok=True)
        log = self.log = LOGS / f"{self.name.split(' ')[0].lower()}-{self.port}.log"
        with log.open("wb") as out:
            self.process = subprocess.Popen(command, cwd=cwd, env={**os.environ, **(env or {})}, stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_until_up(self.url + health, self.process)
        except (RuntimeError, TimeoutError) as exc:
            self.stop()
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{self.name} did not start ({exc}); the end of {log}:\n{tail}") from None


def _modelserve_env(settings: dict[str, str]) -> dict[str, str]:
    return {f"MODELSERVE_{key.upper()}": value for key, value in settings.items()}


def served_device(settings: dict[str, str]) -> str:
    """The device a modelserve server given these settings runs on, resolved as the service resolves 'auto'."""
    return resolve_device(ServeConfig.from_env({**os.environ, **_modelserve_env(settings)}).device)


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


def _v2_tensor(model: str, k: int, name: str) -> tuple[dict, np.ndarray]:
    """One v2 input tensor of k copies of the model's example, and its values as an array."""
    values = np.asarray([EXAMPLE[model]] * k, dtype=np.int64 if model.startswith("transformer") else np.float32)
    datatype = "INT64" if values.dtype == np.int64 else "FP32"
    return {"name": name, "shape": list(values.shape), "datatype": datatype}, values


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


class Peer(System):
    """Another server on the same ONNX files, run where modelserve runs in this benchmark: on a GPU the peers'
    sessions take ONNX Runtime's CUDA provider (peers/onnx_session.py), from onnxruntime-gpu in venvs of their
    own, and their names say so; on the CPU nothing changes."""

    def __init__(self, name: str, **kwargs) -> None:
        self.device = served_device({})
        super().__init__(name + (" on CUDA" if self.device == "cuda" else ""), **kwargs)

    def _python(self, venv: str, packages: list[str], base_python: str = sys.executable) -> Path:
        if self.device == "cuda":  # with the CUDA and cuDNN wheels that onnxruntime.preload_dlls() loads
            return peer_venv(f"{venv}-cuda", [p if p != "onnxruntime" else "onnxruntime-gpu[cuda,cudnn]"
                                              for p in packages], base_python)
        return peer_venv(venv, packages, base_python)

    def _spawn(self, command: list[str], env: dict | None = None, health: str = "/readyz") -> None:
        path = os.pathsep.join(filter(None, [str(BENCH / "peers"), os.environ.get("PYTHONPATH")]))
        # PEER_WORKERS: the peer's server processes (or replicas, instances), as many as modelserve's workers
        super()._spawn(command, {"PEER_DEVICE": self.device, "PEER_WORKERS": WORKERS, "PYTHONPATH": path,
                                 **(env or {})}, health)


class StockBentoml(Peer):
    """BentoML's own example shape serves one model per service, so it restarts for each model."""

    def __init__(self, name: str) -> None:
        super().__init__(name, one_model_at_a_time=True)

    def start(self, dirs: dict[str, Path], models: list[str]) -> None:
        (model,) = models
        self.stop()
        self.port = free_port()
        # (`python -m bentoml` rather than the `bentoml` script: a wheel installed for the whole machine puts
        # scripts where this Python's directory need not be)
        self._spawn([sys.executable, "-m", "bentoml", "serve", "benchmarks.peers.stock_bentoml:Stock",
                     "--port", str(self.port)], {"STOCK_ONNX": str(dirs[model] / "model.onnx")})

    def request(self, model: str, k: int = 1) -> tuple[str, dict]:
        return "/predict", {"inputs": [EXAMPLE[model]] * k}

    @staticmethod
    def _predictions(response: httpx.Response) -> list:
        return response.json()


class FastapiPeer(Peer):
    def start(self, dirs: dict[str, Path], models: list[str]) -> None:
        python = self._python("fastapi", ["fastapi", "uvicorn", "onnxruntime", "numpy"])
        self._spawn([str(python), str(BENCH / "peers" / "fastapi_onnx.py"), str(self.port),
                     *_onnx_specs(dirs, models)], health="/health")


class RayServePeer(Peer):
    def start(self, dirs: dict[str, Path], models: list[str]) -> None:
        python = self._python("ray", ["ray[serve]", "onnxruntime", "numpy"])
        self._spawn([str(python), str(BENCH / "peers" / "ray_serve_onnx.py"), str(self.port),
                     *_onnx_specs(dirs, models)], health="/health")

    def request(self, model: str, k: int = 1) -> tuple[str, dict]:
        return f"/{model}", {"instances": [EXAMPLE[model]] * k}


class MlserverPeer(Peer):
    repository: Path | None = None

    def start(self, dirs: dict[str, Path], models: list[str]) -> None:
        # uvloop 0.22 refuses asyncio.get_event_loop() outside a loop, which MLServer 1.7's workers call.
        python = self._python("mlserver", ["mlserver", "onnxruntime", "numpy", "uvloop<0.22"])
        self.repository = Path(tempfile.mkdtemp(prefix="mlserver-peer-"))  # its model settings; removed at stop
        ports = f"{self.port},{free_port()},{free_port()}"  # HTTP, gRPC, metrics: each free, none assumed
        self._spawn([str(python), str(BENCH / "peers" / "mlserver_onnx.py"), ports, str(self.repository),
                     *_onnx_specs(dirs, models)], health="/v2/health/ready")

    def stop(self) -> None:
        super().stop()
        if self.repository is not None:
            shutil.rmtree(self.repository, ignore_errors=True)

    def request(self, model: str, k: int = 1) -> tuple[str, dict]:
        tensor, values = _v2_tensor(model, k, "input")
        return f"/v2/models/{model}/infer", {"inputs": [{**tensor, "data": values.ravel().tolist()}]}

    @staticmethod
    def _predictions(response: httpx.Response) -> list:
        return response.json()["outputs"][0]["data"]


class LitservePeer(Peer):
    """LitServe serves one LitAPI per server in its examples, so it restarts for each model."""

    def __init__(self, name: str) -> None:
        super().__init__(name, one_model_at_a_time=True)

    def start(self, dirs: dict[str, Path], models: list[str]) -> None:
        (model,) = models
        self.stop()
        self.port = free_port()
        python = self._python("litserve", ["litserve", "onnxruntime", "numpy"])
        self._spawn([str(python), str(BENCH / "peers" / "litserve_onnx.py"), str(self.port),
                     str(dirs[model] / "model.onnx")], health="/health")

    def request(self, model: str, k: int = 1) -> tuple[str, dict]:
        return "/predict", {"instances": [EXAMPLE[model]] * k}


class KservePeer(Peer):
    def start(self, dirs: dict[str, Path], models: list[str]) -> None:
        python = self._python("kserve", ["kserve==0.21.0", "onnxruntime", "numpy"])
        self._spawn([str(python), str(BENCH / "peers" / "kserve_onnx.py"), str(self.port),
                     *_onnx_specs(dirs, models)], health="/v2/health/ready")


class TritonPeer(Peer):
    """Triton through PyTriton; its environment is made from Debian's Python 3.11 (Triton's Python backend stub links
    the system's libpython3.11: a pyenv 3.11 mixes two standard libraries and fails at model load)."""

    input_names: dict[str, str] = {}

    def start(self, dirs: dict[str, Path], models: list[str]) -> None:
        import onnxruntime

        python = self._python("pytriton", ["nvidia-pytriton", "onnxruntime", "numpy<2"], base_python=DEBIAN_PYTHON)
        self.input_names = {m: onnxruntime.InferenceSession(str(dirs[m] / "model.onnx")).get_inputs()[0].name
                            for m in models}
        ports = f"{self.port},{free_port()},{free_port()}"  # HTTP, gRPC, metrics
        # (Triton is ready with no model bound yet; the last model bound is the one to wait for)
        self._spawn([str(python), str(BENCH / "peers" / "pytriton_onnx.py"), ports, *_onnx_specs(dirs, models)],
                    health=f"/v2/models/{models[-1]}/ready")

    def request(self, model: str, k: int = 1) -> tuple[str, dict]:
        tensor, values = _v2_tensor(model, k, self.input_names[model])
        return f"/v2/models/{model}/infer", {"inputs": [{**tensor, "data": values.ravel().tolist()}]}

    @staticmethod
    def _predictions(response: httpx.Response) -> list:
        return response.json()["outputs"][0]["data"]


class HttpCeiling(System):
    """No framework, no parsing, no model: uvicorn answering bytes made at start-up (peers/http_ceiling.py). Runs
    in the project's environment, with as many workers as modelserve gets."""

    def start(self, dirs: dict[str, Path], models: list[str]) -> None:
        specs = {m: {"onnx": str(dirs[m] / "model.onnx"), "example": EXAMPLE[m]} for m in models}
        self._spawn([sys.executable, str(BENCH / "peers" / "http_ceiling.py"), str(self.port), WORKERS],
                    {"CEILING_SPECS": json.dumps(specs)}, health="/health")

    def request(self, model: str, k: int = 1) -> tuple[str, dict]:
        return f"/{model}/{k}", {"instances": [EXAMPLE[model]] * k}


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
