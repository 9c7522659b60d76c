"""The peers users would pick instead of modelserve, each serving the same ONNX files, in its own virtual
environment (which shares no pins with bentoml), with as many server processes as modelserve has workers."""

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import httpx
from system_base import (
    BENCH,
    DEBIAN_PYTHON,
    EXAMPLE,
    WORKERS,
    System,
    _onnx_specs,
    _v2_tensor,
    free_port,
    peer_venv,
    served_device,
)


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


class OnePeerPerModel(Peer):
    """A peer whose examples serve one model per server: it restarts, on a fresh port, for each model."""

    def __init__(self, name: str) -> None:
        super().__init__(name, one_model_at_a_time=True)

    def _restart_for(self, models: list[str]) -> str:
        (model,) = models
        self.stop()
        self.port = free_port()
        return model


class StockBentoml(OnePeerPerModel):
    """BentoML's own example shape serves one model per service."""

    def start(self, dirs: dict[str, Path], models: list[str]) -> None:
        model = self._restart_for(models)
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


class LitservePeer(OnePeerPerModel):
    """LitServe serves one LitAPI per server in its examples."""

    def start(self, dirs: dict[str, Path], models: list[str]) -> None:
        model = self._restart_for(models)
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

