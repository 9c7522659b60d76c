"""Inference engines: ONNX Runtime and TorchScript, on CUDA where present, the CPU otherwise.

Both take a numpy batch (float32 features (B, F) or int64 ids (B, L)) and return float32 (B, K).
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


def load_engine(backend: str, model_dir: Path, device: str, threads: int, tf32: bool = True):
    if backend == "onnx":
        return OnnxEngine(model_dir / "model.onnx", device, threads, tf32)
    if backend == "torchscript":
        return TorchScriptEngine(model_dir / "model.pt", device, threads, tf32)
    raise ValueError(f"unknown backend {backend!r}")
