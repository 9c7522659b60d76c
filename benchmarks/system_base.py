"""What every system in the serving benchmark shares: the run's settings, the example instances, the System base
(start on 127.0.0.1, say how a request of k instances looks, stop the whole process group) and the peers' virtual
environments. The systems themselves: systems.py (modelserve) and peer_systems.py (the peers).
"""

import contextlib
import os
import site
import socket
import subprocess
import sys
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


def _v2_tensor(model: str, k: int, name: str) -> tuple[dict, np.ndarray]:
    """One v2 input tensor of k copies of the model's example, and its values as an array."""
    values = np.asarray([EXAMPLE[model]] * k, dtype=np.int64 if model.startswith("transformer") else np.float32)
    datatype = "INT64" if values.dtype == np.int64 else "FP32"
    return {"name": name, "shape": list(values.shape), "datatype": datatype}, values

