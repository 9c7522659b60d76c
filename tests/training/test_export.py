"""TorchScript and ONNX agree with the eager model; a broken export fails the job and saves nothing."""

import copy
import json

import numpy as np
import onnxruntime
import pytest
import torch

import models
from tests.conftest import DEFAULT_MODELS, store_snapshot
from training import data, export
from training.cli import main


def rebuild_eager(model_dir) -> tuple[export.ServingGraph, dict]:
    state = torch.load(model_dir / "checkpoint.pt", weights_only=True)
    model = models.build_model(state["model_name"], models.make_config(state["model_name"], state["model_config"]))
    model.load_state_dict(state["state_dict"])
    manifest = json.loads((model_dir / "manifest.json").read_text())
    return export.ServingGraph(model.eval(), manifest["task"] != "regression").eval(), manifest


FRESH = {"regression": lambda: data.housing(n=200, seed=5), "mlp": lambda: data.zigzag(n=200, seed=5),
         "transformer": lambda: data.order_task(n=200, seed=5)}


@pytest.mark.parametrize("name", DEFAULT_MODELS)
def test_manifest_records_parity_for_every_format_and_case(trained, name):
    parity = trained[name]["manifest"]["parity"]
    formats = {r["format"] for r in parity["results"]}
    cases = {r["case"] for r in parity["results"]}
    assert formats == {"torchscript", "onnx"}
    for batch_size in (1, 7, 64):
        assert any(c.startswith(f"batch={batch_size}") for c in cases)
    if name == "transformer":
        assert len({c.split("len=")[1] for c in cases}) >= 3  # several lengths, padded ones among them
        assert any("padded_to" in c for c in cases)
    assert parity["max_abs_diff"] <= export.PARITY_TOLERANCE


@pytest.mark.parametrize("name", DEFAULT_MODELS)
def test_stored_exports_match_checkpoint_on_fresh_inputs(trained, name):
    graph, manifest = rebuild_eager(trained[name]["path"])
    scripted = torch.jit.load(str(trained[name]["path"] / "model.pt"))
    session = onnxruntime.InferenceSession(str(trained[name]["path"] / "model.onnx"),
                                           providers=["CPUExecutionProvider"])
    fresh = FRESH[name]()
    scale = 1.0 if manifest["task"] != "regression" else float(fresh.targets.std())
    with torch.inference_mode():
        expected = graph(fresh.inputs).numpy()
        got_ts = scripted(fresh.inputs).numpy()
    got_onnx = session.run(None, {manifest["inputs"][0]["name"]: fresh.inputs.numpy()})[0]
    assert np.abs(got_ts - expected).max() / scale <= export.PARITY_TOLERANCE
    assert np.abs(got_onnx - expected).max() / scale <= export.PARITY_TOLERANCE


def _perturbed(module: torch.nn.Module) -> torch.nn.Module:
    broken = copy.deepcopy(module)
    with torch.no_grad():
        for p in broken.parameters():
            p.add_(0.05)
    return broken


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_broken_export_fails_the_job_and_saves_nothing(fmt, monkeypatch, tmp_path, capsys):
    if fmt == "torchscript":
        real = torch.jit.script
        monkeypatch.setattr(export.torch.jit, "script", lambda m, *a, **k: real(_perturbed(m), *a, **k))
    else:
        real = torch.onnx.export
        monkeypatch.setattr(export.torch.onnx, "export", lambda m, *a, **k: real(_perturbed(m), *a, **k))
    before = store_snapshot()
    code = main(["train", "regression", "--name", f"broken-{fmt}", "--run-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1
    assert f"{fmt} export disagrees with the eager model beyond 0.0001" in err
    assert "batch=64:" in err  # the numbers are printed, case by case
    assert store_snapshot() == before


def test_parity_check_accepts_equal_and_rejects_different_outputs():
    graph = export.ServingGraph(torch.nn.Linear(3, 1), classification=False).eval()
    cases = [export.ParityCase("batch=2", torch.randn(2, 3))]
    ok = export._check("same", graph, lambda x: graph(x).detach(), cases, torch.ones(1))
    assert ok[0].max_abs_diff == 0.0
    with pytest.raises(export.ParityError, match=r"batch=2: 0.001"):
        export._check("off", graph, lambda x: graph(x).detach() + 1e-3, cases, torch.ones(1))
