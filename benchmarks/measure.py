"""What the serving benchmark measures: wrk runs, the raw engine in-process, rows per engine call, memory."""

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import onnxruntime
from systems import BENCH, EXAMPLE, Framed, served_device

sys.path.insert(0, str(BENCH / "peers"))
from onnx_session import peer_session  # noqa: E402


def describe_machine() -> str:
    """Cores and Python, plus the GPU and ONNX Runtime's version where the service would run on CUDA, so a
    results file says which hardware its figures are from."""
    line = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    if served_device({}) == "cuda":
        query = ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"]
        gpu = subprocess.run(query, capture_output=True, text=True).stdout.strip().splitlines() or ["a GPU"]
        line += f", one {gpu[0]} (ONNX Runtime {onnxruntime.__version__})"
    return line


def run_wrk(url: str, body: dict | Framed, concurrency: int, seconds: float, rows_per_request: int = 1) -> dict:
    """One wrk window (1 thread, keep-alive connections). Non-2xx answers are errors, never throughput."""
    framed = body if isinstance(body, Framed) else Framed(json.dumps(body).encode())
    with tempfile.NamedTemporaryFile("wb", suffix=".body", delete=False) as f:
        f.write(framed.content)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--timeout", "10s", "-s",
                          str(BENCH / "wrk_post.lua"), url], capture_output=True, text=True, check=True,
                         env={**os.environ, "WRK_BODY_FILE": f.name,
                              "WRK_HEADERS": "\n".join(f"{k}: {v}" for k, v in framed.headers.items())})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    os.unlink(f.name)
    stats = json.loads(out.stdout.strip().splitlines()[-1])
    errors = stats["connect_errors"] + stats["read_errors"] + stats["write_errors"] + stats["status_errors"] \
        + stats["timeouts"]
    served = stats["requests"] - stats["status_errors"]
    seconds_run = stats["duration_us"] / 1e6
    return {"rows_per_s": served * rows_per_request / seconds_run, "errors": errors, "p50_ms": stats["p50_us"] / 1e3,
            "p95_ms": stats["p95_us"] / 1e3, "p99_ms": stats["p99_us"] / 1e3, "seconds": seconds_run,
            "wrk_cpu_s": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)}


def measure_window(system, path: str, body: dict | Framed, concurrency: int, seconds: float,
                   rows_per_request: int = 1) -> dict:
    """One wrk window against a running system, with the server's CPU time per served row beside its rows/s:
    the CPU of its process and every worker under it (Ray Serve's raylet, GCS and replicas are children of the
    peer's process too). A window that served nothing has no such figure (NaN)."""
    cpu_before = tree_cpu_s(system.process)
    point = run_wrk(system.url + path, body, concurrency, seconds, rows_per_request)
    served_rows = point["rows_per_s"] * point["seconds"]
    point["server_cpu_us_per_row"] = (tree_cpu_s(system.process) - cpu_before) / served_rows * 1e6 \
        if served_rows else float("nan")
    return point


def engine_calls(url: str, model: str) -> tuple[float, float]:
    """(rows, engine calls) so far, from the service's modelserve_rows_per_engine_call histogram."""
    text = httpx.get(f"{url}/metrics", timeout=10).text

    def value(suffix: str) -> float:  # summed over the versions served
        prefix = f'modelserve_rows_per_engine_call_{suffix}{{model="{model}",'
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))

    return value("sum"), value("count")


def tree_rss_mb(process: subprocess.Popen | None) -> float:
    """Resident memory of a server and all its worker processes, in MiB."""
    import psutil

    if process is None or process.poll() is not None:
        return 0.0
    root = psutil.Process(process.pid)
    return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 2**20


def tree_cpu_s(process: subprocess.Popen | None) -> float:
    """CPU seconds (user + system) a server and its live worker processes have used so far."""
    import psutil

    if process is None or process.poll() is not None:
        return 0.0
    root = psutil.Process(process.pid)
    total = 0.0
    for p in [root, *root.children(recursive=True)]:
        try:
            times = p.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def _session(onnx_file: Path, device: str = "cpu") -> onnxruntime.InferenceSession:
    """The peers' session (one intra-op thread on the CPU, the CUDA provider alone on a GPU), so a served/raw
    ratio on a GPU compares the service with the engine it runs, not with the CPU."""
    return peer_session(str(onnx_file), device)


def _batch(model: str, rows: int) -> np.ndarray:
    dtype = np.int64 if model.startswith("transformer") else np.float32
    return np.asarray([EXAMPLE[model]] * rows, dtype=dtype)  # (rows, features or tokens)


def raw_output(onnx_file: Path, model: str) -> np.ndarray:
    """The raw engine's answer for one example: what every served system must return."""
    session = _session(onnx_file)
    return session.run(None, {session.get_inputs()[0].name: _batch(model, 1)})[0]


def raw_engine(onnx_file: Path, model: str, batch_sizes: list[int], seconds: float,
               device: str = "cpu") -> dict[int, float]:
    """ONNX Runtime in-process, one thread, no server: rows/s at each batch size (numpy in and out)."""
    session = _session(onnx_file, device)
    name = session.get_inputs()[0].name
    result = {}
    for batch in batch_sizes:
        x = _batch(model, batch)
        session.run(None, {name: x})
        calls, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            session.run(None, {name: x})
            calls += 1
        result[batch] = calls * batch / (time.perf_counter() - started)
    return result
