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


def test_serving_benchmark_runs_and_writes_results(trained, tmp_path):
    from tests.paths import SESSION_HOME

    env = {**__import__("os").environ, "BENTOML_HOME": str(SESSION_HOME)}
    subprocess.run([sys.executable, "benchmarks/serving.py", "--quick", "--models", "transformer", "--out",
                    str(tmp_path)], cwd=REPO, check=True, capture_output=True, timeout=300, env=env)
    result = json.loads((tmp_path / "serving_quick.json").read_text())
    (name,) = result["systems"]
    point = result["systems"][name]["transformer"]["8"]
    assert name.startswith("modelserve (batched, onnx")
    assert point["rows_per_s"] > 0 and point["errors"] == 0 and point["rows_per_engine_call"] >= 1
    assert result["raw"]["transformer"]["batch64_rows_per_s"] > 0
    assert (tmp_path / "serving_quick.png").read_bytes()[:4] == b"\x89PNG"
    bulk = result["bulk"][name]["transformer"]
    assert bulk["rows_per_s"] > 0 and bulk["errors"] == 0 and bulk["served_over_raw_batch64"] > 0
    assert result["rss_mb"][name] > 100  # a server with torch and the models loaded
