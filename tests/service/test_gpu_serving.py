"""Serving on CUDA: ONNX Runtime's CUDA provider and TorchScript on the GPU give the CPU's answers, and small
batches that run faster on the CPU go to the engine's CPU twin.

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
    # (the CPU twin off: these few rows would run there, and this test is about the CUDA engines)
    server = start(tmp_path_factory, f"cuda-{backend}-tf32-{tf32}", backend=backend, device="cuda", tf32=tf32,
                   small_batches_on_cpu="false")
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


def engine_calls(server, model: str) -> dict[str, float]:
    """Engine calls so far by the device they ran on, from /metrics."""
    calls = {}
    for line in httpx.get(f"{server.url}/metrics").text.splitlines():
        if line.startswith("modelserve_inference_seconds_count{") and f'model="{model}"' in line:
            device = line.split('device="')[1].split('"')[0]
            calls[device] = calls.get(device, 0) + float(line.rsplit(" ", 1)[1])
    return calls


@pytest.mark.parametrize("backend", ["onnx", "torchscript"])
def test_small_batches_run_on_the_cpu_twin_and_large_ones_on_cuda(trained, cpu_server, tmp_path_factory, backend):
    server = start(tmp_path_factory, f"cuda-split-{backend}", backend=backend, device="cuda")
    try:
        assert "faster there than on cuda" in server.log()  # warm-up measured the split
        url = f"{server.url}/v1/models/transformer:predict"
        lone = httpx.post(url, json={"instances": ["xxaybz"]}).json()["predictions"]
        after_lone = engine_calls(server, "transformer")
        assert after_lone.get("cpu", 0) >= 1 and after_lone.get("cuda", 0) == 0, after_lone
        bulk_body = {"instances": [f"xy{'a' * (k % 20)}b" for k in range(64)]}
        bulk = httpx.post(url, json=bulk_body).json()["predictions"]
        after_bulk = engine_calls(server, "transformer")
        assert after_bulk.get("cuda", 0) >= 1, after_bulk
        reference = httpx.post(f"{cpu_server.url}/v1/models/transformer:predict",
                               json={"instances": ["xxaybz", *bulk_body["instances"]]}).json()["predictions"]
        for got, expected in zip(lone + bulk, reference, strict=True):
            assert got["label"] == expected["label"]
            np.testing.assert_allclose(list(got["probabilities"].values()),
                                       list(expected["probabilities"].values()), atol=1e-3)
    finally:
        server.stop()
