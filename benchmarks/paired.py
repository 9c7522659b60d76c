"""Two systems measured in alternating windows (A B A B ...), for comparisons that single windows cannot settle.

On a shared machine one window can move ±20-30 %, so a system measured minutes after another inherits
whatever the neighbours were doing. Here both systems are up at once (an idle one costs no CPU) and
take turns at every point; the verdict is the ratio of their medians, with each round's ratio shown.
The default compares batching on and off, the target that single windows left undecided:

    python benchmarks/paired.py                                  # modelserve against modelserve-unbatched
    python benchmarks/paired.py --systems modelserve,fastapi --models transformer --concurrency 1,64
"""

import argparse
import json
import os
import platform
import statistics
import sys
from datetime import datetime, timezone
from pathlib import Path

from measure import run_wrk
from serving import MODELS, check_answer, model_dirs
from systems import BENCH, SYSTEMS


def paired(keys: list[str], models: list[str], concurrencies: list[int], rounds: int, seconds: float) -> dict:
    dirs = model_dirs(models)
    systems = [SYSTEMS[key]() for key in keys]
    result = {"systems": [s.name for s in systems], "rounds": rounds, "seconds": seconds, "points": {}}
    try:
        for system in systems:
            system.start(dirs, models)
        for model in models:
            for system in systems:
                check_answer(system, model, dirs[model] / "model.onnx")
                path, body = system.request(model)
                run_wrk(system.url + path, body, max(concurrencies), 2)  # warm-up, not recorded
            for concurrency in concurrencies:
                runs = {s.name: [] for s in systems}
                for round_ in range(rounds):
                    order = systems if round_ % 2 == 0 else systems[::-1]  # neither always goes first
                    for system in order:
                        path, body = system.request(model)
                        runs[system.name].append(run_wrk(system.url + path, body, concurrency, seconds))
                a, b = (runs[s.name] for s in systems)
                point = {"median_rows_per_s": [statistics.median(r["rows_per_s"] for r in rs) for rs in (a, b)],
                         "round_ratios": [x["rows_per_s"] / y["rows_per_s"] for x, y in zip(a, b)],
                         "errors": [sum(r["errors"] for r in rs) for rs in (a, b)],
                         "median_p99_ms": [statistics.median(r["p99_ms"] for r in rs) for rs in (a, b)]}
                point["ratio_of_medians"] = point["median_rows_per_s"][0] / point["median_rows_per_s"][1]
                result["points"].setdefault(model, {})[str(concurrency)] = point
                print(f"{model:12s} c={concurrency:<4d} {point['median_rows_per_s'][0]:9,.0f} against "
                      f"{point['median_rows_per_s'][1]:9,.0f} rows/s: {point['ratio_of_medians']:.2f}x "
                      f"(rounds {', '.join(f'{r:.2f}' for r in point['round_ratios'])})", flush=True)
    finally:
        for system in systems:
            system.stop()
    return result


def write(result: dict, out: Path, stem: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2))
    first, second = result["systems"]
    lines = [f"# {first} against {second}, alternating windows ({result['date']})", "",
             f"Machine: {result['machine']}. {result['rounds']} rounds of {result['seconds']} s windows per point, "
             "the two systems taking turns (the order flips each round); one instance per request.", "",
             "| model | concurrency | rows/s (first) | rows/s (second) | ratio of medians | each round | "
             "p99 ms (first / second) | errors |", "|---|---:|---:|---:|---:|---|---:|---:|"]
    for model, points in result["points"].items():
        for concurrency, p in points.items():
            first_rows, second_rows = p["median_rows_per_s"]
            lines.append(f"| {model} | {concurrency} | {first_rows:,.0f} | {second_rows:,.0f}"
                         f" | {p['ratio_of_medians']:.2f} | {', '.join(f'{r:.2f}' for r in p['round_ratios'])} | "
                         f"{p['median_p99_ms'][0]:.1f} / {p['median_p99_ms'][1]:.1f} | {sum(p['errors'])} |")
    ratios = {(m, c): p["ratio_of_medians"] for m, points in result["points"].items() for c, p in points.items()}
    (worst_model, worst_c), worst = min(ratios.items(), key=lambda item: item[1])
    lines += ["", f"Lowest ratio of medians: {worst:.2f} ({worst_model} c={worst_c}); "
              f"{sum(r >= 1.0 for r in ratios.values())} of {len(ratios)} points at 1.0 or above."]
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", default="modelserve,modelserve-unbatched", help="two, from " + ", ".join(SYSTEMS))
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--concurrency", default="1,8,32,64,128")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--stem", default="paired")
    parser.add_argument("--out", type=Path, default=BENCH / "results")
    args = parser.parse_args()
    keys = args.systems.split(",")
    if len(keys) != 2 or set(keys) - set(SYSTEMS) or any(SYSTEMS[k]().one_model_at_a_time for k in keys):
        sys.exit(f"--systems takes two systems that serve all models at once, from {', '.join(SYSTEMS)}")
    result = paired(keys, args.models.split(","), [int(c) for c in args.concurrency.split(",")], args.rounds,
                    args.seconds)
    result.update({"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                   "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"})
    write(result, args.out, args.stem)
    print(f"results in {args.out / args.stem}.md")


if __name__ == "__main__":
    main()
