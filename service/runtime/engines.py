"""Inference engines: ONNX Runtime and TorchScript, on CUDA where present, the CPU otherwise.

Each takes a numpy batch (float32 features (B, F) or int64 ids (B, L)) and returns float32 (B, K), and says which
device a batch of a given shape runs on (`device_for`: the split engine sends small batches to the CPU).
"""

import ctypes
import logging
from pathlib import Path

import numpy as np
import onnxruntime

log = logging.getLogger(__name__)


def cuda_available() -> bool:
    """Whether the NVIDIA driver reports a GPU, asked through libcuda so the ONNX backend need not import
    torch (about 350 MB per worker)."""
    try:
        libcuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    count = ctypes.c_int(0)
    return libcuda.cuInit(0) == 0 and libcuda.cuDeviceGetCount(ctypes.byref(count)) == 0 and count.value > 0


def resolve_device(requested: str) -> str:
    """'auto' -> 'cuda' when torch sees a GPU, else 'cpu'. Asking for CUDA without one is an error."""
    if requested == "auto":
        return "cuda" if cuda_available() else "cpu"
    if requested == "cuda" and not cuda_available():
        raise RuntimeError("device cuda was asked for, but no CUDA device is visible")
    return requested


class OnnxEngine:
    backend = "onnx"

    def __init__(self, path: Path, device: str, threads: int, tf32: bool = True) -> None:
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        providers: list = ["CPUExecutionProvider"]
        if device == "cuda":
            # Use the CUDA/cuDNN libraries that torch's wheels ship rather than system ones.
            if hasattr(onnxruntime, "preload_dlls"):
                onnxruntime.preload_dlls()
            cuda = {"device_id": 0, "use_tf32": int(tf32)}  # the provider's default is 1
            providers = [("CUDAExecutionProvider", cuda), "CPUExecutionProvider"]
        self.session = onnxruntime.InferenceSession(str(path), sess_options=options, providers=providers)
        if device == "cuda" and self.session.get_providers()[0] != "CUDAExecutionProvider":
            raise RuntimeError(f"{path}: ONNX Runtime could not start its CUDA provider "
                               f"(got {self.session.get_providers()})")
        self.device = device
        self.input_name = self.session.get_inputs()[0].name

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0]

    def device_for(self, shape: tuple[int, ...]) -> str:
        return self.device


class TorchScriptEngine:
    backend = "torchscript"

    def __init__(self, path: Path, device: str, threads: int, tf32: bool = True) -> None:
        import torch  # only this backend needs it

        torch.set_num_threads(threads)
        if device == "cuda":  # process-wide, and a worker runs one backend; "highest" is torch's own default
            torch.set_float32_matmul_precision("high" if tf32 else "highest")
        self.torch = torch
        self.device = device
        self.module = torch.jit.load(str(path), map_location=device).eval()

    def run(self, batch: np.ndarray) -> np.ndarray:
        torch = self.torch
        with torch.inference_mode():
            out = self.module(torch.from_numpy(batch).to(self.device, non_blocking=True))
        return out.float().cpu().numpy()

    def device_for(self, shape: tuple[int, ...]) -> str:
        return self.device


class SmallBatchesOnCpu:
    """A CUDA engine with a CPU twin that runs the batches warm-up measured faster on it: a GPU call has a floor of
    its own (on an H200, 0.42 ms for one row of the default transformer against 0.1 ms on a CPU thread), and past
    a few rows the GPU wins by far. `cpu_rows`: by batch width (a token model's length bucket), the most rows the
    CPU takes; until warm-up sets it, everything runs on CUDA."""

    def __init__(self, gpu, cpu) -> None:
        self.gpu, self.cpu = gpu, cpu
        self.backend = gpu.backend
        self.device = gpu.device
        self.cpu_rows: dict[int, int] = {}

    def device_for(self, shape: tuple[int, ...]) -> str:
        rows = 0
        for width, rows in self.cpu_rows.items():  # (ascending: the first bucket that holds this width, else the last)
            if shape[1] <= width:
                break
        return "cpu" if shape[0] <= rows else self.gpu.device

    def run(self, batch: np.ndarray) -> np.ndarray:
        return (self.cpu if self.device_for(batch.shape) == "cpu" else self.gpu).run(batch)


def load_engine(backend: str, model_dir: Path, device: str, threads: int, tf32: bool = True,
                small_batches_on_cpu: bool = False):
    """The model's engine on `device`; on CUDA with `small_batches_on_cpu`, a CPU twin beside it."""
    if device == "cuda" and small_batches_on_cpu:
        return SmallBatchesOnCpu(load_engine(backend, model_dir, "cuda", threads, tf32),
                                 load_engine(backend, model_dir, "cpu", threads, tf32))
    if backend == "onnx":
        return OnnxEngine(model_dir / "model.onnx", device, threads, tf32)
    if backend == "torchscript":
        return TorchScriptEngine(model_dir / "model.pt", device, threads, tf32)
    raise ValueError(f"unknown backend {backend!r}")
