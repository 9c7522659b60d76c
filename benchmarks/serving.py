"""Serving benchmark: modelserve beside the raw engine and the servers users would otherwise pick.

Every system serves the same ONNX files from the model store, on 127.0.0.1, one after another in
one run, loaded by wrk (Debian's package) with one instance per request. Non-2xx answers are
counted as errors, never as throughput. Results go to benchmarks/results/serving.{json,md,png}.

    python benchmarks/serving.py                       # all systems, concurrency 1 8 32 64 128
    python benchmarks/serving.py --quick               # a short window: proves the script works
    python benchmarks/serving.py --systems modelserve,fastapi --models transformer --concurrency 64
"""

import argparse
import json
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import httpx
import numpy as np
import onnxruntime

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "benchmarks"
VENVS = BENCH / ".venvs"
MODELS = ("regression", "mlp", "transformer")
EXAMPLE = {"regression": [120.0, 15.0], "mlp": [0.5],
           "transformer": [(ord(c) + 4) for c in "xqazbkxqazbkxqazbkxqazbkxqazbkzb"]}  # 32 byte tokens


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def model_dirs() -> dict[str, Path]:
    """Latest version of each default model in the store ($BENTOML_HOME), training what is missing."""
    for model in MODELS:
        subprocess.run([sys.executable, "-m", "training.cli", "train", model, "--if-missing"], cwd=REPO, check=True,
                       capture_output=True)
    home = Path(os.environ.get("BENTOML_HOME", Path.home() / "bentoml"))
    return {m: home / "models" / m / (home / "models" / m / "latest").read_text().strip() for m in MODELS}


def wait_until_up(url: str, process: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: server exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"{url} did not come up")


# ---------------------------------------------------------------- systems under test

@dataclass
class System:
    name: str
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    has_metrics: bool = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)

    def _spawn(self, command: list[str], env: dict | None = None, health: str = "/readyz") -> None:
        self.process = subprocess.Popen(command, cwd=REPO, env={**os.environ, **(env or {})},
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_until_up(self.url + health, self.process)


class Modelserve(System):
    def __init__(self, name: str, **settings: str) -> None:
        super().__init__(name, has_metrics=True)
        self.settings = settings

    def start(self, dirs: dict[str, Path]) -> None:
        env = {f"MODELSERVE_{k.upper()}": v for k, v in self.settings.items()}
        self._spawn([sys.executable, "-m", "training.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                    env)

    def request(self, model: str, k: int = 1) -> tuple[str, dict]:
        return f"/v1/models/{model}:predict", {"instances": [EXAMPLE[model]] * k}


class StockBentoml(System):
    def start(self, dirs: dict[str, Path]) -> None:
        self.model = None

    def start_model(self, model: str, dirs: dict[str, Path]) -> None:
        self.stop()
        self.port = free_port()
        bentoml_cli = str(Path(sys.executable).parent / "bentoml")
        self._spawn([bentoml_cli, "serve", "benchmarks.peers.stock_bentoml:Stock", "--port", str(self.port)],
                    {"STOCK_ONNX": str(dirs[model] / "model.onnx")})

    def request(self, model: str, k: int = 1) -> tuple[str, dict]:
        return "/predict", {"inputs": [EXAMPLE[model]] * k}


def peer_venv(name: str, packages: list[str]) -> Path:
    """A peer's own virtual environment (peers do not share pins with bentoml); made once, kept in .venvs/."""
    venv = VENVS / name
    python = venv / "bin" / "python"
    if not (venv / ".ready").exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *packages], check=True)
        (venv / ".ready").touch()
    return python


class FastapiPeer(System):
    def start(self, dirs: dict[str, Path]) -> None:
        python = peer_venv("fastapi", ["fastapi", "uvicorn", "onnxruntime", "numpy"])
        self._spawn([str(python), str(BENCH / "peers" / "fastapi_onnx.py"), str(self.port),
                     *(f"{m}={dirs[m] / 'model.onnx'}" for m in MODELS)], health="/health")

    def request(self, model: str, k: int = 1) -> tuple[str, dict]:
        return f"/v1/models/{model}:predict", {"instances": [EXAMPLE[model]] * k}


WORKERS = str(os.cpu_count() or 1)  # one service worker per core: the configuration this benchmark recommends

SYSTEMS = {
    "modelserve": lambda: Modelserve(f"modelserve (batched, onnx, {WORKERS} workers)", workers=WORKERS),
    "modelserve-torchscript": lambda: Modelserve(f"modelserve (batched, torchscript, {WORKERS} workers)",
                                                 backend="torchscript", workers=WORKERS),
    "modelserve-unbatched": lambda: Modelserve(f"modelserve (unbatched, {WORKERS} workers)", batching="false",
                                               workers=WORKERS),
    "modelserve-1w": lambda: Modelserve("modelserve (batched, onnx, 1 worker)"),
    "stock-bentoml": lambda: StockBentoml("stock BentoML (batched)"),
    "fastapi": lambda: FastapiPeer("FastAPI + ORT (hand-written)"),
}


# ---------------------------------------------------------------- measurement

def run_wrk(url: str, body: dict, concurrency: int, seconds: float, rows_per_request: int = 1) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(body, f)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--timeout", "10s", "-s",
                          str(BENCH / "wrk_post.lua"), url], capture_output=True, text=True, check=True,
                         env={**os.environ, "WRK_BODY_FILE": f.name})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    os.unlink(f.name)
    stats = json.loads(out.stdout.strip().splitlines()[-1])
    errors = stats["connect_errors"] + stats["read_errors"] + stats["write_errors"] + stats["status_errors"] \
        + stats["timeouts"]
    served = stats["requests"] - stats["status_errors"]
    seconds_run = stats["duration_us"] / 1e6
    return {"rows_per_s": served * rows_per_request / seconds_run, "errors": errors, "p50_ms": stats["p50_us"] / 1e3,
            "p95_ms": stats["p95_us"] / 1e3, "p99_ms": stats["p99_us"] / 1e3,
            "wrk_cpu_s": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)}


def rows_per_call(url: str, model: str) -> tuple[float, float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    def value(suffix):
        for line in text.splitlines():
            if line.startswith(f'modelserve_rows_per_engine_call_{suffix}{{model="{model}"}}'):
                return float(line.rsplit(" ", 1)[1])
        return 0.0
    return value("sum"), value("count")


def tree_rss_mb(process: subprocess.Popen | None) -> float:
    """Resident memory of a server and all its worker processes, in MiB."""
    import psutil

    if process is None or process.poll() is not None:
        return 0.0
    root = psutil.Process(process.pid)
    return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 2**20


def raw_engine(dirs: dict[str, Path], model: str, seconds: float) -> dict:
    """ONNX Runtime in-process, one thread: rows/s at batch 1 and at batch 64."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(dirs[model] / "model.onnx"), sess_options=options,
                                           providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    dtype = np.int64 if model == "transformer" else np.float32
    result = {}
    for batch in (1, 64):
        x = np.asarray([EXAMPLE[model]] * batch, dtype=dtype)
        session.run(None, {name: x})
        calls, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            session.run(None, {name: x})
            calls += 1
        result[f"batch{batch}_rows_per_s"] = calls * batch / (time.perf_counter() - started)
    return result


def benchmark(system_keys: list[str], models: list[str], concurrencies: list[int], seconds: float,
              warmup: float, bulk: bool = True) -> dict:
    dirs = model_dirs()
    results = {"raw": {m: raw_engine(dirs, m, seconds) for m in models}, "systems": {}, "bulk": {}, "rss_mb": {}}
    for key in system_keys:
        system = SYSTEMS[key]()
        rows = results["systems"].setdefault(system.name, {})
        try:
            system.start(dirs)
            for model in models:
                if isinstance(system, StockBentoml):
                    system.start_model(model, dirs)
                path, body = system.request(model)
                run_wrk(system.url + path, body, max(concurrencies), warmup)  # warm-up, not recorded
                for concurrency in concurrencies:
                    before = rows_per_call(system.url, model) if system.has_metrics else None
                    point = run_wrk(system.url + path, body, concurrency, seconds)
                    if before:
                        after = rows_per_call(system.url, model)
                        point["rows_per_engine_call"] = (after[0] - before[0]) / max(1.0, after[1] - before[1])
                    point["served_over_raw_batch1"] = point["rows_per_s"] / results["raw"][model]["batch1_rows_per_s"]
                    rows.setdefault(model, {})[str(concurrency)] = point
                    print(f"{system.name:36s} {model:12s} c={concurrency:<4d} {point['rows_per_s']:9,.0f} rows/s "
                          f"p99 {point['p99_ms']:7.1f} ms errors {point['errors']}", flush=True)
                if bulk:  # 64 instances per request at concurrency 8, against the raw engine at batch 64
                    path, body = system.request(model, 64)
                    point = run_wrk(system.url + path, body, 8, seconds, rows_per_request=64)
                    point["served_over_raw_batch64"] = point["rows_per_s"] / results["raw"][model]["batch64_rows_per_s"]
                    results["bulk"].setdefault(system.name, {})[model] = point
                    print(f"{system.name:36s} {model:12s} bulk 64x8 {point['rows_per_s']:9,.0f} rows/s "
                          f"({point['served_over_raw_batch64']:.2f} of raw batch 64) errors {point['errors']}",
                          flush=True)
            results["rss_mb"][system.name] = tree_rss_mb(system.process)
        finally:
            system.stop()
    return results


# ---------------------------------------------------------------- reporting

def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def write_report(results: dict, out: Path, stem: str, concurrencies: list[int]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(results, indent=2))
    lines = [f"# Serving benchmark ({results['date']})", "", f"Machine: {results['machine']}. One instance per "
             f"request, wrk with 1 thread, {results['seconds']} s windows after a warm-up; every system in turn "
             "in one run. Non-2xx answers count as errors, not throughput.", ""]
    for model, raw in results["raw"].items():
        lines += [f"## {model}", "", f"Raw engine (ONNX Runtime, 1 thread, in-process): "
                  f"{raw['batch1_rows_per_s']:,.0f} rows/s at batch 1, {raw['batch64_rows_per_s']:,.0f} at batch 64.",
                  "", "| system | concurrency | rows/s | p50 ms | p95 ms | p99 ms | errors | rows/engine call | "
                  "served/raw (batch 1) | wrk CPU s |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for system, per_model in results["systems"].items():
            for concurrency, p in per_model.get(model, {}).items():
                call = f"{p['rows_per_engine_call']:.1f}" if "rows_per_engine_call" in p else ""
                lines.append(f"| {system} | {concurrency} | {p['rows_per_s']:,.0f} | {p['p50_ms']:.1f} | "
                             f"{p['p95_ms']:.1f} | {p['p99_ms']:.1f} | {p['errors']} | {call} | "
                             f"{p['served_over_raw_batch1']:.2f} | {p['wrk_cpu_s']:.1f} |")
        lines.append("")
    if results["bulk"]:
        lines += ["## Bulk: 64 instances per request, concurrency 8", "",
                  "| system | model | rows/s | of raw engine at batch 64 | p99 ms | errors |",
                  "|---|---|---:|---:|---:|---:|"]
        for system, per_model in results["bulk"].items():
            for model, p in per_model.items():
                lines.append(f"| {system} | {model} | {p['rows_per_s']:,.0f} | {p['served_over_raw_batch64']:.2f} | "
                             f"{p['p99_ms']:.1f} | {p['errors']} |")
        lines.append("")
    lines += ["## Memory: resident set of the server and its workers after the runs above", "",
              "| system | RSS MiB |", "|---|---:|"]
    lines += [f"| {system} | {mb:,.0f} |" for system, mb in results["rss_mb"].items()]
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    plot(results, out / f"{stem}.png", concurrencies)


def plot(results: dict, path: Path, concurrencies: list[int]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(results["raw"])
    fig, axes = plt.subplots(2, len(models), figsize=(5 * len(models), 7), squeeze=False)
    for col, model in enumerate(models):
        for system, per_model in results["systems"].items():
            points = per_model.get(model, {})
            xs = [int(c) for c in points]
            axes[0][col].plot(xs, [points[c]["rows_per_s"] for c in points], marker="o", label=system)
            axes[1][col].plot(xs, [points[c]["p99_ms"] for c in points], marker="o", label=system)
        axes[0][col].set_title(f"{model}: throughput")
        axes[0][col].set_ylabel("rows/s")
        axes[1][col].set_title(f"{model}: p99 latency")
        axes[1][col].set_ylabel("ms")
        axes[1][col].set_yscale("log")
        for ax in axes[:, col]:
            ax.set_xscale("log", base=2)
            ax.set_xlabel("concurrency")
            ax.set_xticks(concurrencies, [str(c) for c in concurrencies])
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--concurrency", default="1,8,32,64,128")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--quick", action="store_true", help="1 s windows, concurrency 8, modelserve only")
    parser.add_argument("--out", type=Path, default=BENCH / "results")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (make bench installs Debian's wrk)")
    if args.quick:
        args.systems, args.concurrency, args.seconds, args.warmup = "modelserve", "8", 1.0, 0.5
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    results = benchmark(args.systems.split(","), args.models.split(","), concurrencies, args.seconds, args.warmup)
    results.update({"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
                    "seconds": args.seconds, "quick": args.quick})
    write_report(results, args.out, "serving_quick" if args.quick else "serving", concurrencies)
    print(f"results in {args.out}")


if __name__ == "__main__":
    main()
