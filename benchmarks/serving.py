"""Serving benchmark: modelserve beside the raw engine and the servers users would otherwise pick.

Every system serves the same ONNX files from the model store, on 127.0.0.1, with the same number of server
processes (MODELSERVE_BENCH_WORKERS, default one per core: modelserve's workers, each peer's workers, replicas or
instances) and one ONNX Runtime thread per engine call, one after another in one run, loaded by wrk (Debian's
package) with one instance per request, then with 64 instances per request. The run makes three passes over the
systems, their order rotated, and reports the median of each figure with its spread. Non-2xx answers are counted
as errors, never as throughput. Also: the raw engine at the batch sizes the batcher formed, peak memory per system,
and modelserve's memory against its max batch size. Results go to benchmarks/results/serving.{json,md,png}.

    python benchmarks/serving.py                       # every system, concurrency 1 8 32 64 128
    python benchmarks/serving.py --quick               # a short window: proves the script works
    python benchmarks/serving.py --systems modelserve,fastapi --models transformer --concurrency 64
    python benchmarks/serving.py --models transformer-heavy --systems modelserve,modelserve-unbatched \
        --concurrency 64 --stem heavy                  # d_model 256, 4 layers, 128 tokens
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from measure import describe_machine, engine_calls, measure_window, raw_engine, raw_output, run_wrk, tree_rss_mb
from serving_report import write_report
from systems import BENCH, GPU_ONLY, REPO, SYSTEMS, WORKERS, Modelserve, System, served_device

MODELS = ("regression", "mlp", "transformer")
HEAVY_RECIPE = BENCH / "heavy_transformer.toml"
BULK_ROWS, BULK_CONCURRENCY = 64, 8


def model_dirs(models: list[str]) -> dict[str, Path]:
    """Latest version of each model in the store ($BENTOML_HOME), training what is missing."""
    home = Path(os.environ.get("BENTOML_HOME", Path.home() / "bentoml"))
    for model in models:
        if (home / "models" / model / "latest").exists():
            continue  # (asking the training CLI costs its ~5 s of imports per model)
        train = [sys.executable, "-m", "training.cli", "train"]
        if model == "transformer-heavy":
            command = [*train, "transformer", "--name", model, "--config", str(HEAVY_RECIPE), "--if-missing"]
        else:
            command = [*train, model, "--if-missing"]
        subprocess.run(command, cwd=REPO, check=True, capture_output=True)
    return {m: home / "models" / m / (home / "models" / m / "latest").read_text().strip() for m in models}


class PeakMemory:
    """Samples the resident memory of a server's process tree every 0.2 s; keeps the peak."""

    def __init__(self, system: System) -> None:
        self.system, self.peak_mb = system, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            try:
                self.peak_mb = max(self.peak_mb, tree_rss_mb(self.system.process))
            except Exception:  # a worker exiting between listing and reading: the next sample catches up
                pass

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._thread.join()


def check_answer(system: System, model: str, onnx_file: Path) -> float:
    """Every system must compute what the raw engine computes; a benchmark of wrong answers is worthless."""
    served = np.asarray(system.answer(model), dtype=np.float64)
    expected = np.ravel(raw_output(onnx_file, model)).astype(np.float64)
    if served.shape != expected.shape or not np.allclose(served, expected, atol=1e-4, rtol=1e-4):
        raise RuntimeError(f"{system.name} answered {served[:4]} for {model}; the raw engine gives {expected[:4]}")
    return float(np.max(np.abs(served - expected)))


def measure_model(system: System, model: str, concurrencies: list[int], seconds: float, warmup: float,
                  bulk: bool) -> tuple[dict, dict | None]:
    path, body = system.request(model)
    run_wrk(system.url + path, body, max(concurrencies), warmup)  # warm-up, not recorded
    points = {}
    for concurrency in concurrencies:
        before = engine_calls(system.url, model) if system.has_metrics else None
        point = measure_window(system, path, body, concurrency, seconds)
        if before:
            after = engine_calls(system.url, model)
            point["rows_per_engine_call"] = (after[0] - before[0]) / max(1.0, after[1] - before[1])
        points[str(concurrency)] = point
        print(f"{system.name:40s} {model:17s} c={concurrency:<4d} {point['rows_per_s']:9,.0f} rows/s "
              f"p99 {point['p99_ms']:7.1f} ms server CPU {point['server_cpu_us_per_row']:6.1f} us/row "
              f"errors {point['errors']}", flush=True)
    if not bulk:
        return points, None
    path, body = system.request(model, BULK_ROWS)
    bulk_point = measure_window(system, path, body, BULK_CONCURRENCY, seconds, rows_per_request=BULK_ROWS)
    print(f"{system.name:40s} {model:17s} bulk {BULK_ROWS}x{BULK_CONCURRENCY} {bulk_point['rows_per_s']:9,.0f} rows/s "
          f"server CPU {bulk_point['server_cpu_us_per_row']:.1f} us/row errors {bulk_point['errors']}", flush=True)
    return points, bulk_point


def memory_by_max_batch(dirs: dict[str, Path], models: list[str], sizes: list[int], seconds: float) -> dict:
    """modelserve's memory (all models loaded) idle and at its peak under bulk load, per max batch size."""
    result = {}
    heaviest = models[-1]
    for size in sizes:
        system = Modelserve(f"max_batch_size {size}", workers=WORKERS, max_batch_size=str(size))
        try:
            system.start(dirs, models)
            idle = tree_rss_mb(system.process)
            with PeakMemory(system) as peak:
                path, body = system.request(heaviest, BULK_ROWS)
                point = run_wrk(system.url + path, body, BULK_CONCURRENCY, seconds, rows_per_request=BULK_ROWS)
            result[str(size)] = {"idle_mb": idle, "peak_mb": max(peak.peak_mb, idle), "model": heaviest,
                                 "rows_per_s": point["rows_per_s"], "errors": point["errors"]}
            print(f"max_batch_size {size:4d}: idle {idle:6.0f} MiB, peak {result[str(size)]['peak_mb']:6.0f} MiB "
                  f"under bulk {heaviest}", flush=True)
        finally:
            system.stop()
    return result


def benchmark(system_keys: list[str], dirs: dict[str, Path], models: list[str], concurrencies: list[int],
              seconds: float, warmup: float, bulk: bool = True) -> dict:
    """One pass: each system in turn, started, measured at every point, stopped."""
    results = {"systems": {}, "bulk": {}, "peak_rss_mb": {}, "system_keys": {}, "failed": {}}
    for key in system_keys:
        try:
            measure_system(key, results, dirs, models, concurrencies, seconds, warmup, bulk)
        except (RuntimeError, subprocess.CalledProcessError) as error:
            # A server that dies under load (PyTriton's Python backend once did, at c=1 after the c=64 warm-up)
            # loses this pass, not the run: its figures of this pass are dropped, and the report says why.
            name = results["system_keys"].get(key, key)
            results["failed"].setdefault(name, []).append(str(error)[-400:])
            for section in ("systems", "bulk", "peak_rss_mb"):
                results[section].pop(name, None)
            print(f"{name} failed in this pass: {error}", flush=True)
    return results


def measure_system(key: str, results: dict, dirs: dict[str, Path], models: list[str], concurrencies: list[int],
                   seconds: float, warmup: float, bulk: bool) -> None:
    system = SYSTEMS[key]()
    results["system_keys"][key] = system.name  # targets.py finds the systems it compares by key
    rows = results["systems"].setdefault(system.name, {})
    groups = [[m] for m in models] if system.one_model_at_a_time else [models]
    peak = 0.0
    try:
        for group in groups:
            system.start(dirs, group)
            with PeakMemory(system) as memory:
                for model in group:
                    check_answer(system, model, dirs[model] / "model.onnx")
                    rows[model], bulk_point = measure_model(system, model, concurrencies, seconds, warmup, bulk)
                    if bulk_point:
                        results["bulk"].setdefault(system.name, {})[model] = bulk_point
            peak = max(peak, memory.peak_mb)
        results["peak_rss_mb"][system.name] = peak
    finally:
        system.stop()


def _median_points(passes: list[dict], bulk: bool) -> dict:
    """One system's points (model -> concurrency -> point; bulk: model -> point), each figure the median over the
    passes that have it; errors summed, so that an error in any pass shows."""
    merged = {}
    for model in dict.fromkeys(m for p in passes for m in p):
        keys = [""] if bulk else list(dict.fromkeys(c for p in passes if model in p for c in p[model]))
        for key in keys:
            each = [p[model][key] if key else p[model] for p in passes if model in p and (not key or key in p[model])]
            point = {}
            for field_name, value in each[0].items():
                if field_name == "errors":
                    point[field_name] = sum(p[field_name] for p in each)
                elif isinstance(value, (int, float)) and not isinstance(value, bool):
                    point[field_name] = statistics.median(p[field_name] for p in each if field_name in p)
            point["passes_rows_per_s"] = [p["rows_per_s"] for p in each]
            if bulk:
                merged[model] = point
            else:
                merged.setdefault(model, {})[key] = point
    return merged


def rotated_passes(system_keys: list[str], passes: int, run) -> dict:
    """`passes` runs of `run(keys)`, the systems' order rotated each time (A B C, B C A, C A B, ...), so that no
    system always runs first or last, and no one disturbed spell decides a table: every figure is the median over
    the passes, with each pass's rows/s kept beside it (`passes_rows_per_s`) for the spread."""
    runs = []
    for i in range(passes):
        shift = i % len(system_keys)
        order = system_keys[shift:] + system_keys[:shift]
        print(f"pass {i + 1} of {passes}: {', '.join(order)}", flush=True)
        runs.append(run(order))
    merged = {**runs[0], "passes": passes, "failed": {}}
    for section in ("systems", "bulk"):
        names = dict.fromkeys(name for r in runs for name in r[section])  # (in order; one may miss a pass)
        merged[section] = {name: _median_points([r[section][name] for r in runs if name in r[section]],
                                                section == "bulk") for name in names}
    merged["peak_rss_mb"] = {s: max(r["peak_rss_mb"][s] for r in runs if s in r["peak_rss_mb"])
                             for s in dict.fromkeys(s for r in runs for s in r["peak_rss_mb"])}
    merged["system_keys"] = {k: v for r in runs for k, v in r["system_keys"].items()}
    for r in runs:
        for name, reasons in r["failed"].items():
            merged["failed"].setdefault(name, []).extend(reasons)
    return merged


def raw_at_formed_batches(dirs: dict[str, Path], models: list[str], results: dict, seconds: float) -> dict:
    """The raw engine at batch 1, at the bulk batch, and at every batch size the batcher formed; then
    each served figure as a ratio of the raw engine at the matching batch size."""
    raw = {}
    for model in models:
        formed = {max(1, round(p["rows_per_engine_call"])) for per_model in results["systems"].values()
                  for p in per_model.get(model, {}).values() if "rows_per_engine_call" in p}
        rates = raw_engine(dirs[model] / "model.onnx", model, sorted({1, BULK_ROWS} | formed), min(seconds, 2.0),
                           device=results["raw_device"])
        raw[model] = {str(b): r for b, r in rates.items()}
        for per_model in results["systems"].values():
            for p in per_model.get(model, {}).values():
                p["served_over_raw_batch1"] = p["rows_per_s"] / raw[model]["1"]
                if "rows_per_engine_call" in p:
                    p["raw_at_formed_batch"] = raw[model][str(max(1, round(p["rows_per_engine_call"])))]
        for per_model in results["bulk"].values():
            if model in per_model:
                point = per_model[model]
                point["served_over_raw_batch64"] = point["rows_per_s"] / raw[model][str(BULK_ROWS)]
    return raw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", help=f"comma-separated, from {', '.join(SYSTEMS)} (default: all; on the CPU "
                                          f"all but {', '.join(sorted(GPU_ONLY))})")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--concurrency", default="1,8,32,64,128")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--memory-batch-sizes",
                        help="modelserve's max batch sizes to measure memory at (default 2,16,64,256; 2,64 with "
                             "--quick; '' to skip)")
    parser.add_argument("--quick", action="store_true", 
                        help="1 s windows, concurrency 8, modelserve unless --systems says")
    parser.add_argument("--passes", type=int, default=3, help="passes over all systems, their order rotated; every "
                        "figure is the median over the passes (1 with --quick)")
    parser.add_argument("--stem", default="serving", help="results file name stem")
    parser.add_argument("--out", type=Path, default=BENCH / "results")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (make bench installs Debian's wrk)")
    if args.quick:
        args.systems, args.concurrency, args.seconds, args.warmup = args.systems or "modelserve", "8", 1.0, 0.5
        args.passes = 1
        args.stem = f"{args.stem}_quick"
    if args.memory_batch_sizes is None:
        args.memory_batch_sizes = "2,64" if args.quick else "2,16,64,256"
    args.systems = args.systems or ",".join(key for key in SYSTEMS
                                            if key not in GPU_ONLY or served_device({}) == "cuda")
    unknown = sorted(set(args.systems.split(",")) - set(SYSTEMS))
    if unknown:
        sys.exit(f"unknown system(s) {unknown}; choose from {', '.join(SYSTEMS)}")
    models = args.models.split(",")
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    dirs = model_dirs(models)
    results = rotated_passes(args.systems.split(","), args.passes, lambda keys: benchmark(
        keys, dirs, models, concurrencies, args.seconds, args.warmup))
    # The raw engine runs where modelserve does: on a GPU, ONNX Runtime's CUDA provider is what bulk is held to.
    results["raw_device"] = served_device({})
    results["raw"] = raw_at_formed_batches(dirs, models, results, args.seconds)
    if args.memory_batch_sizes:
        sizes = [int(s) for s in args.memory_batch_sizes.split(",")]
        results["memory_by_max_batch_size"] = memory_by_max_batch(dirs, models, sizes, args.seconds)
    results.update({"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "seconds": args.seconds,
                    "machine": describe_machine(), "quick": args.quick, "workers": WORKERS, "bulk_rows": BULK_ROWS,
                    "bulk_concurrency": BULK_CONCURRENCY})
    write_report(results, args.out, args.stem, concurrencies)
    print(f"results in {args.out / args.stem}.md")


if __name__ == "__main__":
    main()
