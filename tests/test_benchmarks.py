"""The benchmark scripts run through `modelserve bench` on a very short window; their figures are not judged."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from service.runtime.engines import cuda_available
from tests.conftest import REPO


def test_passes_rotate_the_systems_and_report_medians_and_failures():
    sys.path.insert(0, str(REPO / "benchmarks"))
    from serving import rotated_passes

    orders, rates = [], iter([100, 300, 200, 10, 900])

    def one_pass(keys):
        orders.append(keys)
        result = {"systems": {}, "bulk": {}, "peak_rss_mb": {}, "system_keys": {k: k.upper() for k in keys},
                  "failed": {}}
        for key in keys:
            if key == "b" and len(orders) == 2:
                result["failed"]["B"] = ["RuntimeError: the server exited"]  # a pass lost, not the run
                continue
            result["systems"][key.upper()] = {"m": {"8": {"rows_per_s": next(rates), "errors": 1}}}
            result["peak_rss_mb"][key.upper()] = 1.0
        return result

    merged = rotated_passes(["a", "b"], 3, one_pass)
    assert orders == [["a", "b"], ["b", "a"], ["a", "b"]]
    a, b = merged["systems"]["A"]["m"]["8"], merged["systems"]["B"]["m"]["8"]
    assert a["passes_rows_per_s"] == [100, 200, 10] and a["rows_per_s"] == 100 and a["errors"] == 3
    assert b["passes_rows_per_s"] == [300, 900] and b["rows_per_s"] == 600
    assert merged["failed"] == {"B": ["RuntimeError: the server exited"]}


def test_training_benchmark_runs_and_writes_results(tmp_path):
    subprocess.run([sys.executable, "-m", "training.cli", "bench", "training", "--quick", "--models",
                    "regression,transformer", "--out", str(tmp_path)],
                   cwd=REPO, check=True, capture_output=True, timeout=300)
    result = json.loads((tmp_path / "train_throughput_quick.json").read_text())
    assert set(result["models"]) == {"regression", "transformer"}
    assert all(row["samples_per_s"] > 0 and row["epochs"] == 1 for row in result["models"].values())
    assert "| transformer | 1 |" in (tmp_path / "train_throughput_quick.md").read_text()


def run_serving_benchmark(out, *args: str) -> dict:
    from tests.paths import SESSION_HOME

    env = {**os.environ, "BENTOML_HOME": str(SESSION_HOME)}
    done = subprocess.run([sys.executable, "-m", "training.cli", "bench", "serving", "--quick", "--models",
                           "transformer", "--out", str(out), *args],
                          cwd=REPO, capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((out / "serving_quick.json").read_text())


PEERS = ("stock-bentoml", "fastapi", "ray-serve", "mlserver", "litserve", "kserve", "triton", "modelserve-v2-binary",
         "http-ceiling")


def test_serving_benchmark_runs_every_peer_alike_and_writes_results(trained, tmp_path):
    """One short run of every system (starting each is most of the time: one run for them all). Each peer in its own
    venv serves the same ONNX file; the script refuses a peer whose answer differs from the raw engine's, so a clean
    run means every system computed the same prediction. modelserve's v2 binary-tensor client rides along: wrk
    posting framed bytes with their header, errors counted; so does the HTTP ceiling, whose canned answer is the raw
    engine's own."""
    result = run_serving_benchmark(tmp_path, "--systems", ",".join(("modelserve", *PEERS)))
    names = list(result["systems"])
    assert len(names) == 1 + len(PEERS) and any("v2 binary" in name for name in names)
    name = names[0]
    assert name.startswith("modelserve (batched, onnx")
    point = result["systems"][name]["transformer"]["8"]
    assert point["rows_per_engine_call"] >= 1
    raw = result["raw"]["transformer"]
    assert raw["1"] > 0 and raw["64"] > 0 and point["raw_at_formed_batch"] > 0
    assert (tmp_path / "serving_quick.png").read_bytes()[:4] == b"\x89PNG"
    bulk = result["bulk"][name]["transformer"]
    assert bulk["served_over_raw_batch64"] > 0
    assert result["peak_rss_mb"][name] > 100  # a server with the models loaded
    memory = result["memory_by_max_batch_size"]
    assert set(memory) == {"2", "64"} and all(m["errors"] == 0 and m["peak_mb"] >= m["idle_mb"] > 100
                                               for m in memory.values())
    # the server's CPU per row counts its workers: an HTTP request costs tens of microseconds of it at least,
    # where the launcher alone, idle while its workers serve, reads as nearly nothing
    assert 10 < point["server_cpu_us_per_row"] < 10_000 and 0.5 < bulk["server_cpu_us_per_row"] < 10_000
    report = (tmp_path / "serving_quick.md").read_text()
    assert "| 64 |" in report and f"| {point['server_cpu_us_per_row']:,.1f} |" in report
    # every peer runs as many server processes as modelserve has workers, and says so
    assert all(f"{result['workers']} " in name for name in names)
    for name, per_model in result["systems"].items():
        point = per_model["transformer"]["8"]
        assert point["rows_per_s"] > 0 and point["errors"] == 0, name
        assert result["bulk"][name]["transformer"]["rows_per_s"] > 0, name
        assert result["bulk"][name]["transformer"]["errors"] == 0, name
        # every peer's serving processes lie under the process the script starts (Ray Serve's raylet and replicas
        # too), so its CPU per row is its workers' and not an idle parent's
        assert point["server_cpu_us_per_row"] > 5, (name, point["server_cpu_us_per_row"])
    leftovers = subprocess.run(["pgrep", "-f", "raylet|mlserver start|fastapi_onnx|http_ceiling|litserve_onnx|"
                                "kserve_onnx|tritonserver"], capture_output=True, text=True)
    assert leftovers.stdout == "", f"peer processes left running: {leftovers.stdout}"


def test_perf_analyzer_drives_the_v2_api_and_reads_the_services_own_statistics(onnx_server, trained, tmp_path):
    """Triton's load generator, from the tritonclient 2.41.0 wheel, against the service: it reads the model's
    configuration and metadata, sends the example tensor, and its server-side columns come from /stats."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from perf_analyzer import measure

    service = SimpleNamespace(url=onnx_server.url, name="modelserve", port=onnx_server.port)
    onnx_file = Path(trained["transformer"]["path"]) / "model.onnx"
    point = measure(service, "transformer", onnx_file, concurrency=2, seconds=0.5, folder=tmp_path)
    assert point["rows_per_s"] > 0 and point["p99_ms"] >= point["p50_ms"] > 0
    assert point["server_compute_ms"] > 0  # the engine time from the statistics extension, not zero


def test_paired_benchmark_alternates_fresh_servers_beside_a_twin_and_writes_results(trained, tmp_path):
    from tests.paths import SESSION_HOME

    done = subprocess.run([sys.executable, "-m", "training.cli", "bench", "paired", "--models", "regression",
                           "--systems", "modelserve,modelserve-shadow", "--concurrency", "8", "--control",
                           "--rounds", "2", "--seconds", "1", "--out", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "BENTOML_HOME": str(SESSION_HOME)})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((tmp_path / "paired.json").read_text())
    first, second, twin = result["systems"]
    # the second copies every request to a shadow candidate: the shadowing system's own run, in small
    assert first.startswith("modelserve (batched") and "shadowed" in second and twin == f"{first}, twin"
    point = result["points"]["regression"]["8"]
    assert len(point["round_ratios"]) == len(point["control_round_ratios"]) == 2 and point["errors"] == [0, 0, 0]
    assert point["ratio_of_medians"] == point["median_rows_per_s"][0] / point["median_rows_per_s"][1] > 0
    assert point["control_ratio_of_medians"] == point["median_rows_per_s"][0] / point["median_rows_per_s"][2]
    # rounds resampled whole: with two rounds the interval runs from one round's ratio to the other's
    low, high = point["ratio_interval_90"]
    assert low == min(point["round_ratios"]) and high == max(point["round_ratios"])
    assert point["control_interval_90"] == [min(point["control_round_ratios"]), max(point["control_round_ratios"])]
    # the server's CPU per row counts its workers too: a served HTTP request takes tens of microseconds at least,
    # where the launcher alone (idle while its workers serve) would read as nearly nothing
    cpu = point["median_server_cpu_us_per_row"]
    assert len(cpu) == 3 and all(10 < c < 10_000 for c in cpu), cpu
    assert point["cpu_ratio_of_medians"] == cpu[0] / cpu[1]
    report = (tmp_path / "paired.md").read_text()
    assert f"{cpu[0]:.1f} / {cpu[1]:.1f}" in report
    assert "| regression | 8 |" in report and "twin" in report and f"{low:.2f}-{high:.2f}" in report
    logs = [Path(log) for per_round in result["server_logs_by_round"] for log in per_round]
    assert len(set(logs)) == 6 and all("regression" in log.read_text() for log in logs)  # 3 fresh servers a round


def test_gpu_engines_benchmark_trains_exports_and_times_on_the_cpu_too(tmp_path):
    # The GPU machines it was written for lack BentoML, so it drives the loop and exports directly; here it runs
    # on the CPU with one epoch and short windows, which proves the same code path (bar CUDA) works.
    subprocess.run([sys.executable, "benchmarks/gpu_engines.py", "--device", "cpu", "--quick", "--out", str(tmp_path)],
                   cwd=REPO, check=True, capture_output=True, text=True, timeout=300)
    results = json.loads((tmp_path / "gpu_engines-cpu.json").read_text())
    assert set(results["training"]) == {"regression", "mlp", "transformer"}
    for model, run in results["training"].items():
        assert run["samples_per_s"] > 0 and run["epochs"] == 1 and run["precision"] == "fp32", model
    assert set(results["engines"]) == {"transformer", "transformer-heavy"}
    for name, by_backend in results["engines"].items():
        assert set(by_backend) == {"onnx", "torchscript"}, name
        for backend, run in by_backend.items():
            assert run["max_abs_diff_vs_eager_cpu"] < 1e-4, (name, backend)  # the export computes what eager does
            assert set(run["rows_per_s"]) == {"1", "8"} and all(rate > 0 for rate in run["rows_per_s"].values())
    report = (tmp_path / "gpu_engines-cpu.md").read_text()
    assert "| transformer-heavy | ONNX Runtime |" in report and "| mlp | fp32 |" in report


def test_modelserve_systems_are_named_for_what_the_environment_makes_them_run(monkeypatch):
    # paired-gpu ran with MODELSERVE_BACKEND=torchscript exported, and its table said "onnx": the label must come
    # from the settings the server will read, the system's own over those already in the environment.
    sys.path.insert(0, str(REPO / "benchmarks"))
    from systems import SYSTEMS

    monkeypatch.setenv("MODELSERVE_BACKEND", "torchscript")
    monkeypatch.setenv("MODELSERVE_DEVICE", "cpu")
    assert SYSTEMS["modelserve"]().name.startswith("modelserve (batched, torchscript, cpu, ")
    assert SYSTEMS["modelserve-unbatched"]().name.startswith("modelserve (unbatched, torchscript, cpu, ")
    monkeypatch.setenv("MODELSERVE_BACKEND", "onnx")
    assert SYSTEMS["modelserve-torchscript"]().name.startswith("modelserve (batched, torchscript, ")
    assert SYSTEMS["modelserve-1w"]().name == "modelserve (batched, onnx, cpu, 1 worker)"


def test_the_raw_engine_runs_where_modelserve_does_and_never_falls_back_quietly(trained, monkeypatch):
    # On a GPU the bulk target compares served rows with the raw engine; measured on the CPU instead, a GPU
    # service came out at 7.96x "of the raw engine" (2026-11-22). The raw engine takes the service's device,
    # and a CUDA session that ONNX Runtime quietly starts on the CPU is refused, not timed.
    sys.path.insert(0, str(REPO / "benchmarks"))
    from measure import raw_engine
    from systems import served_device

    monkeypatch.setenv("MODELSERVE_DEVICE", "cpu")
    assert served_device({}) == "cpu" and served_device({"device": "cpu"}) == "cpu"
    onnx_file = trained["regression"]["path"] / "model.onnx"
    assert set(raw_engine(onnx_file, "regression", [1, 64], 0.05, device="cpu")) == {1, 64}
    if not cuda_available():
        with pytest.raises(RuntimeError, match="could not start its CUDA provider"):
            raw_engine(onnx_file, "regression", [1], 0.05, device="cuda")


def test_peers_run_where_modelserve_runs_and_refuse_a_quiet_cpu_fallback(trained, monkeypatch):
    # On a GPU node `make bench` once set modelserve on CUDA against peers on one CPU thread. Peers now take
    # PEER_DEVICE from the run, and a CUDA session that ONNX Runtime starts on the CPU is an error.
    sys.path[:0] = [str(REPO / "benchmarks"), str(REPO / "benchmarks" / "peers")]
    from onnx_session import peer_session
    from systems import SYSTEMS, WORKERS

    onnx_file = str(trained["regression"]["path"] / "model.onnx")
    monkeypatch.setenv("PEER_DEVICE", "cpu")
    assert peer_session(onnx_file).get_providers() == ["CPUExecutionProvider"]
    if not cuda_available():
        monkeypatch.setenv("PEER_DEVICE", "cuda")
        with pytest.raises(RuntimeError, match="could not start its CUDA provider"):
            peer_session(onnx_file)
        monkeypatch.setenv("MODELSERVE_DEVICE", "cuda")  # a peer on CUDA where there is none: refused at set-up
        with pytest.raises(RuntimeError, match="no CUDA device"):
            SYSTEMS["fastapi"]()
    monkeypatch.setenv("MODELSERVE_DEVICE", "cpu")
    assert SYSTEMS["fastapi"]().name == f"FastAPI + ORT (hand-written, {WORKERS} uvicorn workers)"


def _wheel(folder: Path, module: str, source: str) -> Path:
    """A one-module wheel, written as pip expects one."""
    path = folder / f"{module}-1.0-py3-none-any.whl"
    info = f"{module}-1.0.dist-info"
    files = {f"{module}.py": source,
             f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n",
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    files[f"{info}/RECORD"] = "".join(f"{name},,\n" for name in [*files, f"{info}/RECORD"])
    with zipfile.ZipFile(path, "w") as wheel:
        for name, text in files.items():
            wheel.writestr(name, text)
    return path


def test_offline_peer_environments_get_the_wheels_on_top_of_this_pythons_packages(tmp_path, monkeypatch):
    # A lent GPU machine reaches no package index, and its python3 is itself a virtual environment: made with
    # --system-site-packages, a peer's environment saw the base interpreter's packages, without numpy or torch.
    sys.path.insert(0, str(REPO / "benchmarks"))
    import system_base

    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel(wheels, "peer_probe", "VALUE = 42\n")
    monkeypatch.setattr(system_base, "PEER_WHEELS", str(wheels))
    monkeypatch.setattr(system_base, "VENVS", tmp_path / "venvs")
    python = system_base.peer_venv("probe", ["ignored-offline"])
    assert python.parent.parent.name == "probe-wheels"
    probe = "import numpy, onnxruntime, peer_probe; print(peer_probe.VALUE, numpy.__file__)"
    done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert done.returncode == 0, done.stderr
    value, numpy_file = done.stdout.split()
    assert value == "42" and not numpy_file.startswith(str(tmp_path))  # the wheel's, and this Python's numpy


def test_soak_loses_nothing_and_its_counters_match_the_load_generator(trained, tmp_path):
    """The soak benchmark on a 3-second window: every answer a 2xx, the service's request counter equal to wrk's
    count (give or take the requests in flight at the end), memory steady."""
    from tests.paths import SESSION_HOME

    done = subprocess.run([sys.executable, "benchmarks/soak.py", "--seconds", "3", "--concurrency", "8",
                           "--no-train-missing", "--out", str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "BENTOML_HOME": str(SESSION_HOME)})
    result = json.loads((tmp_path / "soak_quick.json").read_text())
    assert result["requests"] > 100 and result["server_counted"] >= result["requests"], result
    assert result["checks"] == {"no_errors": True, "counters_match": True, "rss_within_tolerance": True}, result
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
