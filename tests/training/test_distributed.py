"""DistributedDataParallel under torchrun: two gloo ranks on CPU train one model; rank 0 alone writes it."""

import json
import sys

from tests.conftest import run_modelserve, store_snapshot


def test_two_gloo_ranks_train_and_save_one_model(tmp_path):
    home = tmp_path / "home"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                "-m", "training.cli"]
    result = run_modelserve("train", "regression", "--device", "cpu", "--run-dir", "run", home=home,
                            cwd=tmp_path, launcher=torchrun, env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("saved regression:") == 1
    manifests = [p for p in store_snapshot(home) if p.endswith("manifest.json")]
    assert len(manifests) == 1
    manifest = json.loads((home / "models" / manifests[0]).read_text())
    assert manifest["world_size"] == 2
    assert manifest["metrics"]["r2"] > 0.99
