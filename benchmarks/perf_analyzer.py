"""Triton's own load generator, perf_analyzer, as a second opinion beside wrk: modelserve's /v2 and Triton (through
PyTriton) on the same ONNX file with the same process count, loaded the way Triton's users load Triton.

perf_analyzer ships inside the tritonclient 2.41.0 manylinux wheel (later wheels leave it out). It needs libb64
(Debian's libb64-0d, which `make system-deps` installs) and libcudart.so.12 (pip's nvidia-cuda-runtime-cu12) on its
library path, on a CPU-only machine too; it gets an environment of its own in benchmarks/.venvs/perf-analyzer. It
reads each model's configuration (`GET /v2/models/{name}/config`) and, for the server-side columns, its statistics
(`.../stats`), which modelserve serves for it. Each point is the median of --passes passes with the systems' order
rotated between passes.

    python benchmarks/perf_analyzer.py                                  # transformer, c=1,8,64, 3 passes
    python benchmarks/perf_analyzer.py --models regression --concurrency 8 --passes 1 --seconds 2
"""

import argparse
import csv
import json
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from measure import describe_machine
from serving import model_dirs, rotated_passes
from systems import BENCH, EXAMPLE, SYSTEMS, WORKERS, peer_venv

PERF_ANALYZER_PACKAGES = ["tritonclient[http]==2.41.0", "nvidia-cuda-runtime-cu12"]


def perf_analyzer() -> tuple[Path, dict[str, str]]:
    """The binary and the environment it runs in (its libraries on the path)."""
    python = peer_venv("perf-analyzer", PERF_ANALYZER_PACKAGES)
    venv = python.parent.parent
    cudart = next(venv.glob("lib/python*/site-packages/nvidia/cuda_runtime/lib"))
    return venv / "bin" / "perf_analyzer", {"LD_LIBRARY_PATH": str(cudart)}


def input_data(model: str, onnx_file: Path, folder: Path) -> Path:
    """The model's example as perf_analyzer's --input-data file, named as the ONNX file names its input (both
    systems name their input tensor so)."""
    import onnxruntime

    name = onnxruntime.InferenceSession(str(onnx_file)).get_inputs()[0].name
    row = EXAMPLE[model]
    path = folder / f"{model}-{name}.json"
    path.write_text(json.dumps({"data": [{name: {"content": row, "shape": [len(row)]}}]}))
    return path


def measure(system, model: str, onnx_file: Path, concurrency: int, seconds: float, folder: Path) -> dict:
    binary, env = perf_analyzer()
    out = folder / f"{system.port}-{model}-{concurrency}.csv"
    command = [str(binary), "-m", model, "-u", system.url.removeprefix("http://"), "-i", "http",
               "--concurrency-range", f"{concurrency}:{concurrency}", "--max-threads", str(max(4, concurrency)),
               "--measurement-interval", str(int(seconds * 1000)), "--stability-percentage", "100",
               "--max-trials", "3", "--input-data", str(input_data(model, onnx_file, folder)), "-f", str(out)]
    done = subprocess.run(command, env={**env, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"perf_analyzer against {system.name} failed:\n{done.stdout[-3000:]}{done.stderr[-2000:]}")
    (row,) = list(csv.DictReader(out.open()))
    return {"rows_per_s": float(row["Inferences/Second"]), "p50_ms": float(row["p50 latency"]) / 1e3,
            "p99_ms": float(row["p99 latency"]) / 1e3, "server_queue_ms": float(row["Server Queue"]) / 1e3,
            "server_compute_ms": float(row["Server Compute Infer"]) / 1e3}


def one_pass(keys: list[str], dirs: dict, models: list[str], concurrencies: list[int], seconds: float) -> dict:
    results = {"systems": {}, "bulk": {}, "peak_rss_mb": {}, "system_keys": {}, "failed": {}}
    with tempfile.TemporaryDirectory(prefix="perf-analyzer-") as folder:
        for key in keys:
            system = SYSTEMS[key]()
            results["system_keys"][key] = system.name
            results["peak_rss_mb"][system.name] = 0.0
            try:
                system.start(dirs, models)
                for model in models:
                    points = results["systems"].setdefault(system.name, {}).setdefault(model, {})
                    for concurrency in concurrencies:
                        points[str(concurrency)] = point = measure(system, model, dirs[model] / "model.onnx",
                                                                      concurrency, seconds, Path(folder))
                        print(f"{system.name:50s} {model:12s} c={concurrency:<3d} {point['rows_per_s']:9,.0f} "
                              f"rows/s p99 {point['p99_ms']:6.1f} ms", flush=True)
            finally:
                system.stop()
    return results


def write(results: dict, out: Path, stem: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(results, indent=2))
    lines = [f"# perf_analyzer (tritonclient 2.41.0) against modelserve and Triton ({results['date']})", "",
             f"Machine: {results['machine']}. {results['workers']} server processes each (named in each row), the "
             f"same ONNX file, one ONNX Runtime thread per engine call; perf_analyzer over HTTP, one instance per "
             f"request, {results['seconds']} s measurement windows; each figure the median of {results['passes']} "
             "passes, the systems' order rotated between passes (`rows/s per pass` shows the spread). Server "
             "queue and compute are each server's own statistics as perf_analyzer reads them.", "",
             "| system | model | concurrency | rows/s | rows/s per pass | p50 ms | p99 ms | server queue ms | "
             "server compute ms |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for system, per_model in results["systems"].items():
        for model, points in per_model.items():
            for concurrency, p in points.items():
                spread = " / ".join(f"{r:,.0f}" for r in p["passes_rows_per_s"])
                lines.append(f"| {system} | {model} | {concurrency} | {p['rows_per_s']:,.0f} | {spread} | "
                             f"{p['p50_ms']:.2f} | {p['p99_ms']:.2f} | {p['server_queue_ms']:.3f} | "
                             f"{p['server_compute_ms']:.3f} |")
    ours = results["system_keys"].get("modelserve")
    for key, name in results["system_keys"].items():
        if key != "modelserve" and ours:
            ratios = [f"{m} c={c}: {p['rows_per_s'] / results['systems'][name][m][c]['rows_per_s']:.2f}x"
                      for m, points in results["systems"][ours].items() for c, p in points.items()]
            lines += ["", f"modelserve's rows/s against {name}: " + ", ".join(ratios) + "."]
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", default="modelserve,triton")
    parser.add_argument("--models", default="transformer")
    parser.add_argument("--concurrency", default="1,8,64")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--stem", default="perf-analyzer")
    parser.add_argument("--out", type=Path, default=BENCH / "results")
    args = parser.parse_args()
    keys, models = args.systems.split(","), args.models.split(",")
    if set(keys) - {"modelserve", "triton"}:
        sys.exit("--systems: modelserve and triton speak the protocol perf_analyzer drives")
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    dirs = model_dirs(models)
    results = rotated_passes(keys, args.passes, lambda order: one_pass(order, dirs, models, concurrencies,
                                                                        args.seconds))
    results.update({"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "seconds": args.seconds,
                    "machine": describe_machine(), "workers": WORKERS})
    write(results, args.out, args.stem)
    print(f"results in {args.out / args.stem}.md")


if __name__ == "__main__":
    main()
