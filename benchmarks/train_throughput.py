"""Training benchmark: wall time and samples/s of each default recipe, end to end through the CLI.

Each model is trained by the real `modelserve train` in a fresh process with a throwaway model
store, `--repeats` times, eagerly and through torch.compile; the figures are medians. Wall time
includes start-up, export and the parity check; samples/s is the training loop alone (from the
manifest), over all epochs and after the first (where torch.compile pays its compilation).

    python benchmarks/train_throughput.py                # full recipes, eager and compiled, 3 repeats
    python benchmarks/train_throughput.py --quick        # 1 epoch, 1 repeat, eager: proves the script works
    python benchmarks/train_throughput.py --device cuda  # on a GPU (bf16 autocast)
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
MODELS = ("regression", "mlp", "transformer")
TARGET_TOTAL_SECONDS = 180.0


def train_once(model: str, device: str, mode: str, quick: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="modelserve-bench-") as home:
        args = [sys.executable, "-m", "training.cli", "train", model, "--device", device, "--run-dir", f"{home}/run"]
        if quick:
            args += ["--epochs", "1"]
        if mode == "compile":
            args += ["--compile"]
        started = time.perf_counter()
        subprocess.run(args, cwd=REPO, check=True, capture_output=True, text=True,
                       env={**os.environ, "BENTOML_HOME": home, "PYTHONPATH": str(REPO)})
        wall = time.perf_counter() - started
        manifest = json.loads(next(Path(home, "models", model).glob("*/manifest.json")).read_text())
    return {"wall_s": wall, "samples_per_s": manifest["train_samples_per_second"], "epochs": manifest["epochs_run"],
            "steady_samples_per_s": manifest["train_samples_per_second_after_first_epoch"],
            "metric": {manifest["primary_metric"]: manifest["metrics"][manifest["primary_metric"]]}}


def machine() -> str:
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}{gpu}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--modes", default="eager,compile", help="eager and/or compile (torch.compile)")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated, from " + ", ".join(MODELS))
    parser.add_argument("--quick", action="store_true", help="1 epoch, 1 repeat, eager (for the test suite)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    repeats = 1 if args.quick else args.repeats
    unknown = sorted(set(args.models.split(",")) - set(MODELS))
    if unknown:
        sys.exit(f"unknown model(s) {unknown}; choose from {', '.join(MODELS)}")
    modes = ["eager"] if args.quick else args.modes.split(",")

    rows: dict[str, dict[str, dict]] = {}
    for mode in modes:
        for model in args.models.split(","):
            runs = [train_once(model, args.device, mode, args.quick) for _ in range(repeats)]
            row = {key: statistics.median(r[key] for r in runs) for key in ("wall_s", "samples_per_s",
                                                                              "steady_samples_per_s")}
            rows.setdefault(mode, {})[model] = {**row, "epochs": runs[0]["epochs"], "metric": runs[0]["metric"],
                                                "repeats": repeats}
            print(f"{mode:8s} {model:12s} wall {row['wall_s']:6.1f} s  {row['samples_per_s']:10,.0f} samples/s  "
                  f"{row['steady_samples_per_s']:10,.0f} after epoch 1", flush=True)
    total = sum(r["wall_s"] for r in rows[modes[0]].values())
    result = {"benchmark": "train_throughput", "quick": args.quick, "device": args.device, "machine": machine(),
              "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "modes": rows,
              "models": rows[modes[0]], "total_wall_s": total, "target_total_wall_s": TARGET_TOTAL_SECONDS,
              "meets_target": total < TARGET_TOTAL_SECONDS}

    args.out.mkdir(parents=True, exist_ok=True)
    stem = "train_throughput" + ("_quick" if args.quick else "") + ("_cuda" if args.device == "cuda" else "")
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2))
    (args.out / f"{stem}.md").write_text(report(result, modes, repeats))
    print(f"total {total:.1f} s -> {args.out / stem}.md")


def report(result: dict, modes: list[str], repeats: int) -> str:
    rows = result["modes"]
    lines = [f"# Training throughput ({result['date']})", "", f"Machine: {result['machine']}; device "
             f"{result['device']}; median of {repeats} run(s) per model and mode; wall time is the whole "
             "`modelserve train` process (start-up, training, export, parity check, save). \"after epoch 1\" "
             "leaves out the first epoch, where torch.compile compiles.", "",
             "| mode | model | epochs | wall s | train samples/s | after epoch 1 | validation metric |",
             "|---|---|---:|---:|---:|---:|---|"]
    for mode in modes:
        for model, r in rows[mode].items():
            (metric, value), = r["metric"].items()
            lines.append(f"| {mode} | {model} | {r['epochs']} | {r['wall_s']:.1f} | {r['samples_per_s']:,.0f} "
                         f"| {r['steady_samples_per_s']:,.0f} | {metric} {value:.4f} |")
    if "eager" in rows and "compile" in rows:
        lines += ["", "torch.compile against eager (ratio > 1 is faster):", "",
                  "| model | samples/s after epoch 1 | whole-run wall time |", "|---|---:|---:|"]
        for model in rows["eager"]:
            eager, compiled = rows["eager"][model], rows["compile"][model]
            lines.append(f"| {model} | {compiled['steady_samples_per_s'] / eager['steady_samples_per_s']:.2f}x | "
                         f"{eager['wall_s'] / compiled['wall_s']:.2f}x |")
    verdict = "meets" if result["meets_target"] else "MISSES"
    lines += ["", f"Total wall time ({modes[0]}) {result['total_wall_s']:.1f} s: {verdict} the "
              f"{TARGET_TOTAL_SECONDS:.0f} s target."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
