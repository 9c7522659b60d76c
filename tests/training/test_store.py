"""What lands in the model store: every file the service needs, vouched for by the manifest, and atomically."""

import hashlib
import json
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch

import models
from tests.conftest import DEFAULT_MODELS, REPO, run_modelserve, store_snapshot
from training.cli import main
from training.data import BUILTIN


@pytest.mark.parametrize("name", DEFAULT_MODELS)
def test_manifest_hashes_every_file(trained, name):
    path, manifest = trained[name]["path"], trained[name]["manifest"]
    expected = {"checkpoint.pt", "model.pt", "model.onnx", "loss_curve.png"}
    if name == "transformer":
        expected.add("tokenizer.json")
    assert set(manifest["files"]) == expected
    for filename, digest in manifest["files"].items():
        assert hashlib.sha256((path / filename).read_bytes()).hexdigest() == digest
    assert (path / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("name", DEFAULT_MODELS)
def test_manifest_describes_the_served_interface(trained, name):
    manifest = trained[name]["manifest"]
    for key in ("task", "feature_names", "class_names", "inputs", "outputs", "metrics", "parity", "versions"):
        assert key in manifest
    assert set(manifest["versions"]) >= {"torch", "onnx", "onnxruntime", "bentoml", "python"}
    if name == "regression":
        assert manifest["feature_names"] == ["area_m2", "age_years"]
        spec = manifest["inputs"][0]
        assert {k: spec[k] for k in ("name", "datatype", "shape")} == {"name": "features", "datatype": "FP32",
                                                                         "shape": [-1, 2]}
        # Each feature's range over the training split (the rows the model learned from, not validation's).
        train_split, _ = BUILTIN["housing"](seed=0).split(manifest["train_config"]["val_fraction"],
                                                         manifest["train_config"]["seed"])
        assert spec["training_range"] == {"min": train_split.inputs.min(0).values.tolist(),
                                          "max": train_split.inputs.max(0).values.tolist()}
        assert 40 <= spec["training_range"]["min"][0] < spec["training_range"]["max"][0] <= 250  # area_m2
        assert manifest["outputs"][0]["name"] == "predictions"
    if name == "transformer":
        assert manifest["class_names"] == ["b_first", "a_first"]
        assert manifest["inputs"][0]["datatype"] == "INT64" and manifest["inputs"][0]["max_len"] == 32
        assert manifest["inputs"][0]["truncate"] is False  # (the built-in sequences: a longer one is refused)
        # The shortest and longest sequence of the training split: the order task's 4 to 32 bytes.
        train_split, _ = BUILTIN["order"](seed=0).split(manifest["train_config"]["val_fraction"],
                                                       manifest["train_config"]["seed"])
        lengths = (train_split.inputs != 0).sum(1)
        assert manifest["inputs"][0]["training_lengths"] == {"min": lengths.min().item(), "max": lengths.max().item()}
        assert manifest["inputs"][0]["training_lengths"] == {"min": 4, "max": 32}
        # The ids it holds: the byte tokens of the lowercase letters, never padding.
        assert manifest["inputs"][0]["training_tokens"] == sorted(set(train_split.inputs.unique().tolist()) - {0})
        assert manifest["inputs"][0]["training_tokens"] == [ord(c) + 4 for c in "abcdefghijklmnopqrstuvwxyz"]
        assert manifest["outputs"][0] == {"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]}


@pytest.mark.parametrize("name", DEFAULT_MODELS)
def test_checkpoint_loads_with_weights_only_and_rebuilds_the_model(trained, name):
    state = torch.load(trained[name]["path"] / "checkpoint.pt", weights_only=True)
    assert {"model_name", "model_config", "state_dict", "optimizer"} <= set(state)
    if state["train_config"]["solver"] == "gradient":  # (least squares, the regression's default, has no optimizer)
        assert state["optimizer"]["state"], "optimizer state is kept for fine-tuning"
    else:
        assert name == "regression" and state["train_config"]["solver"] == "lstsq"
    model = models.build_model(name, models.make_config(name, state["model_config"]))
    model.load_state_dict(state["state_dict"])


def test_models_command_lists_the_store(trained, capsys):
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    tags = {row["tag"] for row in rows}
    assert {trained[n]["tag"] for n in DEFAULT_MODELS} <= tags
    regression = next(r for r in rows if r["tag"] == trained["regression"]["tag"])
    assert regression["task"] == "regression" and regression["metric"].startswith("r2=0.99")


def test_if_missing_skips_a_model_the_store_has(trained, capsys):
    before = store_snapshot()
    assert main(["train", "regression", "--if-missing"]) == 0
    assert "already in the model store" in capsys.readouterr().out
    assert store_snapshot() == before


def test_job_killed_while_writing_the_model_leaves_nothing_in_the_store(tmp_path):
    """SIGKILL the job in the middle of copying its files into the store: no half model may appear."""
    killer = textwrap.dedent("""
        import os, shutil, signal, sys
        real_copy, copied = shutil.copyfile, []
        def copy_then_die(src, dst, *a, **k):
            if ".modelserve-staging" in str(dst):  # copying into the store's area, not BentoML's temp dir
                copied.append(src)
                if len(copied) == 3:  # two files written, the third never
                    os.kill(os.getpid(), signal.SIGKILL)
            return real_copy(src, dst, *a, **k)
        shutil.copyfile = copy_then_die  # what copy2 and copytree call underneath
        from training.cli import main
        sys.exit(main(["train", "regression"]))
    """)
    home = tmp_path / "home"
    result = run_modelserve(home=home, cwd=tmp_path, launcher=[sys.executable, "-c", killer])
    assert result.returncode == -9, result.stderr
    assert len([p for p in (home / ".modelserve-staging").rglob("*") if p.is_file()]) == 2, "killed mid-write"
    assert store_snapshot(home) == {}
    listed = subprocess.run([sys.executable, "-m", "training.cli", "models", "--json"], cwd=REPO, text=True,
                            capture_output=True, env={**__import__("os").environ, "BENTOML_HOME": str(home)})
    assert json.loads(listed.stdout) == []
    # and the next job publishes normally beside the debris
    assert run_modelserve("train", "regression", home=home, cwd=tmp_path).returncode == 0
    assert any(p.endswith("model.onnx") for p in store_snapshot(home))


def test_store_on_another_filesystem_is_a_clear_error_not_a_partial_write(tmp_path):
    """Staging lives beside the store; if they are on different filesystems, refuse and say how to mount."""
    import pathlib
    shm = pathlib.Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs /dev/shm on a filesystem other than the temporary directory's")
    other = pathlib.Path(__import__("tempfile").mkdtemp(dir=shm))
    home = tmp_path / "home"
    home.mkdir()
    (home / "models").symlink_to(other)
    try:
        result = run_modelserve("train", "regression", home=home, cwd=tmp_path)
        assert result.returncode == 1
        assert "on different filesystems; mount the volume at $BENTOML_HOME" in result.stderr
        assert list(other.rglob("*.onnx")) == []
    finally:
        shutil.rmtree(other, ignore_errors=True)
