"""DistributedDataParallel under torchrun: two gloo ranks on CPU train one model; rank 0 alone writes it."""

import json
import sys

from tests.conftest import run_modelserve, store_snapshot

# Each rank runs the real entry point and, as its interpreter exits, writes when.
RANK_EXIT_PROBE = """
import atexit, os, runpy, time
atexit.register(lambda: open(os.path.join(os.environ["PROBE_DIR"], "rank" + os.environ["RANK"]), "w")
                .write(repr(time.time())))
runpy.run_module("training.cli", run_name="__main__")
"""


def test_two_gloo_ranks_train_and_save_one_model(tmp_path):
    home = tmp_path / "home"
    probe = tmp_path / "rank_exit_probe.py"
    probe.write_text(RANK_EXIT_PROBE)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(probe)]
    result = run_modelserve("train", "regression", "--device", "cpu", "--run-dir", "run", home=home,
                            cwd=tmp_path, launcher=torchrun, env={"OMP_NUM_THREADS": "1", "PROBE_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("saved regression:") == 1
    manifests = [p for p in store_snapshot(home) if p.endswith("manifest.json")]
    assert len(manifests) == 1
    manifest_file = home / "models" / manifests[0]
    manifest = json.loads(manifest_file.read_text())
    assert manifest["world_size"] == 2
    assert manifest["metrics"]["r2"] > 0.99
    # No rank leaves while rank 0 is still exporting: a rank that tore its gloo group down early could die in the
    # teardown (SIGABRT) and take the job down with it. Rank 1 exits only after the model is in the store.
    rank1_exit = float((tmp_path / "rank1").read_text())
    assert rank1_exit > manifest_file.stat().st_mtime
