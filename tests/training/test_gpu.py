"""CUDA paths: bf16 training and CUDA inference of the exports. Skipped with a reason where torch sees no GPU."""

import pytest
import torch

from tests.conftest import run_modelserve, store_snapshot

pytestmark = pytest.mark.gpu


def test_bf16_training_on_cuda_saves_a_model_that_passes_parity(tmp_path):
    result = run_modelserve("train", "transformer", "--device", "cuda", "--epochs", "3", home=tmp_path / "h",
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert any(p.endswith("model.onnx") for p in store_snapshot(tmp_path / "h"))


def test_torchscript_runs_on_cuda(trained):
    scripted = torch.jit.load(str(trained["transformer"]["path"] / "model.pt"), map_location="cuda")
    ids = torch.randint(4, 200, (8, 16), device="cuda")
    cpu = torch.jit.load(str(trained["transformer"]["path"] / "model.pt"))(ids.cpu())
    torch.testing.assert_close(scripted(ids).cpu(), cpu, atol=1e-4, rtol=0)
