"""--resume after a killed run ends exactly where an uninterrupted run of the same seed ends."""

import os
import signal
import subprocess
import sys
import time

import torch

from tests.conftest import REPO, run_modelserve
from tests.paths import SESSION_TMP

# Dropout on, so the resumed run must also restore the RNG; small batches so epochs take a while.
CONFIG = "[model]\ndropout = 0.1\nhidden_sizes = [32, 32]\n[train]\nepochs = 6\npatience = 100\nbatch_size = 8\n"


def stored_state(home) -> dict:
    checkpoint = next((home / "models" / "mlp").glob("*/checkpoint.pt"))
    return torch.load(checkpoint, weights_only=True)["state_dict"]


def test_resume_after_kill_matches_uninterrupted_run(tmp_path):
    (tmp_path / "mlp.toml").write_text(CONFIG)
    args = ["train", "mlp", "--config", "mlp.toml", "--seed", "3"]

    straight = run_modelserve(*args, "--run-dir", "straight", home=tmp_path / "a", cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr

    env = {"BENTOML_HOME": str(tmp_path / "b"), "PYTHONPATH": str(REPO), "TMPDIR": str(SESSION_TMP)}
    job = subprocess.Popen([sys.executable, "-m", "training.cli", *args, "--run-dir", "cut"], cwd=tmp_path,
                           env={**__import__("os").environ, **env}, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    last = tmp_path / "cut" / "last.pt"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if last.exists() and torch.load(last, weights_only=True)["epoch"] >= 1:
            break
        time.sleep(0.02)
    job.send_signal(signal.SIGKILL)
    assert job.wait() == -signal.SIGKILL, "the job finished before it could be interrupted"
    interrupted_at = torch.load(last, weights_only=True)["epoch"]
    assert 1 <= interrupted_at < 5
    assert not (tmp_path / "b" / "models" / "mlp").exists()

    resumed = run_modelserve(*args, "--run-dir", "cut", "--resume", home=tmp_path / "b", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr

    a, b = stored_state(tmp_path / "a"), stored_state(tmp_path / "b")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=0, msg=f"{key} differs after resume")


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    result = run_modelserve("train", "mlp", "--run-dir", "empty", "--resume", home=tmp_path / "h", cwd=tmp_path)
    assert result.returncode == 2
    assert "--resume: no checkpoint at empty/last.pt" in result.stderr


def test_same_seed_same_model_and_another_seed_differs(tmp_path):
    from training.cli import main
    from training.store import list_models

    for name, seed in (("seed-a", "5"), ("seed-b", "5"), ("seed-c", "6")):
        assert main(["train", "mlp", "--name", name, "--seed", seed, "--epochs", "2", "--run-dir",
                     str(tmp_path / name)]) == 0
    states = {m.tag.name: torch.load(f"{m.path}/checkpoint.pt", weights_only=True)["state_dict"]
              for m in list_models() if m.tag.name.startswith("seed-")}
    for key in states["seed-a"]:
        assert torch.equal(states["seed-a"][key], states["seed-b"][key]), key
    assert not torch.equal(states["seed-a"]["net.0.weight"], states["seed-c"]["net.0.weight"])


def test_the_job_holds_mkl_to_its_thread_count_beside_busy_neighbours():
    """MKL's dynamic threading is off in the training job (training/__init__.py), as Intel's conditions for run-to-run
    reproducibility ask: with it on, a run beside other busy processes took another path. MKL reads the setting once,
    when torch first calls it, so it must be set before that: read back from MKL itself, in a fresh process entered
    as the job is."""
    probe = ("import ctypes, os, training.cli, torch\n"
             "torch.ones(64, 64) @ torch.ones(64, 64)\n"
             "mkl = ctypes.CDLL(os.path.join(os.path.dirname(torch.__file__), 'lib', 'libtorch_cpu.so'))\n"
             "print(mkl.mkl_serv_get_dynamic())\n")
    env = {k: v for k, v in os.environ.items() if k != "MKL_DYNAMIC"}
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "0"
    # a user's own setting wins
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env={**env, "MKL_DYNAMIC": "TRUE"},
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "1"
