"""The peers' ONNX Runtime session, on the device modelserve runs on, so a comparison is like with like.

benchmarks/peer_systems.py sets PEER_DEVICE to the device the modelserve servers of the run resolve to, and puts
this folder on PYTHONPATH (every peer runs with it, whatever process imports its model). On the CPU: one
intra-op thread, as modelserve's engines and the raw engine use. On CUDA: ONNX Runtime's CUDA provider
(from the peer's onnxruntime-gpu) and nothing else, since a quiet fall-back to the CPU would make the
peer look slow for the wrong reason.
"""

import os

import onnxruntime


def peer_session(path: str, device: str | None = None) -> onnxruntime.InferenceSession:
    """`device`: 'cpu' or 'cuda'; by default PEER_DEVICE's. The benchmark's raw engine uses it too."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    if (device or os.environ.get("PEER_DEVICE")) != "cuda":
        return onnxruntime.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
    onnxruntime.preload_dlls()  # the CUDA and cuDNN libraries of the nvidia-* wheels onnxruntime-gpu[cuda] brings
    session = onnxruntime.InferenceSession(path, sess_options=options, providers=["CUDAExecutionProvider"])
    if session.get_providers()[0] != "CUDAExecutionProvider":
        raise RuntimeError(f"{path}: ONNX Runtime could not start its CUDA provider")
    return session
