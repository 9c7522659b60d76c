"""Serving on CUDA: ONNX Runtime's CUDA provider and TorchScript on the GPU give the CPU's answers.

Skipped with a reason where torch sees no CUDA device (see tests/conftest.py)."""

import httpx
import numpy as np
import pytest

from tests.servers import start

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def cpu_server(trained, tmp_path_factory):
    """The reference: on a GPU machine the shared servers resolve device 'auto' to CUDA, so this one is pinned."""
    server = start(tmp_path_factory, "cpu-reference", backend="onnx", device="cpu")
    yield server
    server.stop()


# TF32 (the default, ONNX Runtime's CUDA provider's own) rounds float32 matrix inputs to 10 bits of mantissa:
# on an H200 answers moved by up to 2.7e-5 (5.7e-4 for a trained transformer); with it off, 6e-8.
@pytest.mark.parametrize(("backend", "tf32", "atol"), [("onnx", "true", 1e-3), ("onnx", "false", 1e-5),
                                                       ("torchscript", "true", 1e-3), ("torchscript", "false", 1e-5)])
def test_cuda_backend_matches_cpu(trained, cpu_server, tmp_path_factory, backend, tf32, atol):
    server = start(tmp_path_factory, f"cuda-{backend}-tf32-{tf32}", backend=backend, device="cuda", tf32=tf32)
    try:
        meta = httpx.get(f"{server.url}/v1/models/transformer").json()
        assert meta["device"] == "cuda" and meta["backend"] == backend
        body = {"instances": ["xxaybz", "bya", [5, 6, 7]]}
        gpu = httpx.post(f"{server.url}/v1/models/transformer:predict", json=body).json()["predictions"]
        cpu = httpx.post(f"{cpu_server.url}/v1/models/transformer:predict", json=body).json()["predictions"]
        for g, c in zip(gpu, cpu):
            assert g["label"] == c["label"]
            np.testing.assert_allclose(list(g["probabilities"].values()), list(c["probabilities"].values()), atol=atol)
        assert 'device="cuda"' in httpx.get(f"{server.url}/metrics").text
    finally:
        server.stop()
