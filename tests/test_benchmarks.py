"""The benchmark scripts run (on a very short window); their figures are not judged here."""

import json
import subprocess
import sys

from tests.conftest import REPO


def test_training_benchmark_runs_and_writes_results(tmp_path):
    subprocess.run([sys.executable, "benchmarks/train_throughput.py", "--quick", "--out", str(tmp_path)],
                   cwd=REPO, check=True, capture_output=True, timeout=300)
    result = json.loads((tmp_path / "train_throughput_quick.json").read_text())
    assert set(result["models"]) == {"regression", "mlp", "transformer"}
    assert all(row["samples_per_s"] > 0 and row["epochs"] == 1 for row in result["models"].values())
    assert "| transformer | 1 |" in (tmp_path / "train_throughput_quick.md").read_text()
