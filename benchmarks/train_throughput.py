"""Training benchmark: wall time and samples/s of each default recipe, end to end through the CLI.

Each model is trained by the real `modelserve train` in a fresh process with a throwaway model
store, `--repeats` times; the figures are medians. Wall time includes start-up, export and the
parity check; samples/s is the training loop alone (from the manifest).

    python benchmarks/train_throughput.py                # full recipes, 3 repeats
    python benchmarks/train_throughput.py --quick        # 1 epoch, 1 repeat: proves the script works
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


def train_once(model: str, device: str, quick: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="modelserve-bench-") as home:
        args = [sys.executable, "-m", "training.cli", "train", model, "--device", device, "--run-dir", f"{home}/run"]
        if quick:
            args += ["--epochs", "1"]
        started = time.perf_counter()
        subprocess.run(args, cwd=REPO, check=True, capture_output=True, text=True,
                       env={**os.environ, "BENTOML_HOME": home, "PYTHONPATH": str(REPO)})
        wall = time.perf_counter() - started
        manifest = json.loads(next(Path(home, "models", model).glob("*/manifest.json")).read_text())
    return {"wall_s": wall, "samples_per_s": manifest["train_samples_per_second"], "epochs": manifest["epochs_run"],
            "metric": {manifest["primary_metric"]: manifest["metrics"][manifest["primary_metric"]]}}


def machine() -> str:
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}{gpu}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--quick", action="store_true", help="1 epoch, 1 repeat (for the test suite)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    repeats = 1 if args.quick else args.repeats

    rows = {}
    for model in MODELS:
        runs = [train_once(model, args.device, args.quick) for _ in range(repeats)]
        rows[model] = {"wall_s": statistics.median(r["wall_s"] for r in runs),
                       "samples_per_s": statistics.median(r["samples_per_s"] for r in runs),
                       "epochs": runs[0]["epochs"], "metric": runs[0]["metric"], "repeats": repeats}
        print(f"{model:12s} wall {rows[model]['wall_s']:6.1f} s  {rows[model]['samples_per_s']:10,.0f} samples/s",
              flush=True)
    total = sum(r["wall_s"] for r in rows.values())
    result = {"benchmark": "train_throughput", "quick": args.quick, "device": args.device, "machine": machine(),
              "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "models": rows,
              "total_wall_s": total, "target_total_wall_s": TARGET_TOTAL_SECONDS,
              "meets_target": total < TARGET_TOTAL_SECONDS}

    args.out.mkdir(parents=True, exist_ok=True)
    stem = "train_throughput" + ("_quick" if args.quick else "") + ("_cuda" if args.device == "cuda" else "")
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2))
    lines = [f"# Training throughput ({result['date']})", "", f"Machine: {result['machine']}; device {args.device}; "
             f"median of {repeats} run(s) per model; wall time is the whole `modelserve train` process "
             "(start-up, training, export, parity check, save).", "",
             "| model | epochs | wall s | train samples/s | validation metric |", "|---|---:|---:|---:|---|"]
    for model, r in rows.items():
        (metric, value), = r["metric"].items()
        lines.append(f"| {model} | {r['epochs']} | {r['wall_s']:.1f} | {r['samples_per_s']:,.0f} "
                     f"| {metric} {value:.4f} |")
    verdict = "meets" if result["meets_target"] else "MISSES"
    lines += ["", f"Total wall time {total:.1f} s: {verdict} the {TARGET_TOTAL_SECONDS:.0f} s target."]
    (args.out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print(f"total {total:.1f} s -> {args.out / stem}.md")


if __name__ == "__main__":
    main()
