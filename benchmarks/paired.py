"""Two systems measured in alternating windows (A B A B ...), for comparisons that single windows cannot settle.

On a shared machine one window can move ±20-30 %, so a system measured minutes after another inherits
whatever the neighbours were doing. Here the systems are up at once (an idle one costs no CPU) and take
turns at every point; the verdict is the ratio of their medians, with each round's ratio shown.

Each round starts every system afresh. One server instance can stay 5-15 % slower than an identical one
for as long as it runs: at concurrency 1, three instances of the same code served 1,701, 1,877 and
1,979 rows/s side by side over 4 rounds, and a run that kept its servers for all rounds showed batching
behind at c=1 in 9 rounds of 9, where the next such run showed it ahead. The draw seems to be the
worker process's: in one check, a server whose c=1 connection landed on the same worker in 5 windows of
6 ran 10 % below its twin throughout. Memory layout and the hash seed, drawn anew for each process, are
the usual suspects (pyperf spawns many processes for the same reason). Restarting lets the draw come out
differently each round, so the median is over processes as well as windows. `--control` adds a second
instance of the first system (a twin): its ratio to the first is what "no difference" measures at each
point, the noise floor to read the verdict against. Each ratio comes with a 90 % bootstrap interval over
rounds; a point counts as slower only when its whole interval lies below 1.0, and more rounds narrow it.

Beside rows/s, each window records the server's CPU time per row (its process and workers, via psutil). A
neighbour that takes the machine's cores for a while moves a window's rows/s by tens of per cent (at c=1 the
transformer's rounds spread 0.48-1.81x in one run); CPU time per row moves less, though not nothing: in four
points of one run the twins' CPU ratios were 0.91-1.03 where their rows/s ratios were 0.95-1.09. For the cost
of a change on the request path it is a second reading, not a replacement.

The default compares batching on and off:

    python benchmarks/paired.py --control                        # modelserve against modelserve-unbatched
    python benchmarks/paired.py --systems modelserve,fastapi --models transformer --concurrency 1,64
"""

import argparse
import json
import random
import statistics
import sys
from datetime import datetime, timezone
from pathlib import Path

from measure import describe_machine, measure_window, run_wrk
from serving import MODELS, check_answer, model_dirs
from systems import BENCH, SYSTEMS, System

WARM_UP_SECONDS = 1.0
RESAMPLES = 2000


def interval(first: list[float], second: list[float], level: float = 0.9) -> tuple[float, float]:
    """Bootstrap interval of the ratio of medians: rounds are resampled whole (both systems' windows of a round
    together), since a round's servers and the machine's load at that time are what varies between rounds."""
    draw = random.Random(0)  # the same run gives the same interval
    n = len(first)
    ratios = sorted(statistics.median(first[i] for i in picks) / statistics.median(second[i] for i in picks)
                    for picks in ([draw.randrange(n) for _ in range(n)] for _ in range(RESAMPLES)))
    tail = int(RESAMPLES * (1 - level) / 2)
    return ratios[tail], ratios[-tail - 1]


def _make_systems(keys: list[str], control: bool) -> list[System]:
    systems = [SYSTEMS[key]() for key in keys]
    if control:
        twin = SYSTEMS[keys[0]]()
        twin.name += ", twin"
        systems.append(twin)
    return systems


def _one_round(systems: list[System], dirs: dict, models: list[str], concurrencies: list[int], seconds: float,
               turn: int, runs: dict, rows: int) -> None:
    """Start every system, measure each point with the systems taking turns, stop them all. Who starts first
    and who is measured first rotate with the round: neither order is left to favour one system."""
    order = systems[turn % len(systems):] + systems[:turn % len(systems)]
    try:
        for system in order:
            system.start(dirs, models)
        for model in models:
            for system in systems:
                check_answer(system, model, dirs[model] / "model.onnx")
                path, body = system.request(model, rows)
                run_wrk(system.url + path, body, max(concurrencies), WARM_UP_SECONDS)  # warm-up, not recorded
            for concurrency in concurrencies:
                for system in order:
                    path, body = system.request(model, rows)
                    run = measure_window(system, path, body, concurrency, seconds, rows_per_request=rows)
                    runs[(model, concurrency)][systems.index(system)].append(run)
    finally:
        for system in systems:
            system.stop()


def _summary(per_system: list[list[dict]], control: bool) -> dict:
    rows = [[r["rows_per_s"] for r in rs] for rs in per_system]
    medians = [statistics.median(r) for r in rows]
    cpu = [[r["server_cpu_us_per_row"] for r in rs] for rs in per_system]
    cpu_seen = all(c > 0 for rs in cpu for c in rs)  # (a server whose processes lie outside its tree reads 0)
    point = {"median_rows_per_s": medians,
             "median_server_cpu_us_per_row": [statistics.median(c) for c in cpu],
             "cpu_ratio_of_medians": statistics.median(cpu[0]) / statistics.median(cpu[1]) if cpu_seen else None,
             "cpu_ratio_interval_90": interval(cpu[0], cpu[1]) if cpu_seen else None,
             "round_ratios": [x / y for x, y in zip(rows[0], rows[1])],
             "errors": [sum(r["errors"] for r in rs) for rs in per_system],
             "median_p99_ms": [statistics.median(r["p99_ms"] for r in rs) for rs in per_system],
             "ratio_of_medians": medians[0] / medians[1], "ratio_interval_90": interval(rows[0], rows[1])}
    if control:
        point["control_round_ratios"] = [x / y for x, y in zip(rows[0], rows[2])]
        point["control_ratio_of_medians"] = medians[0] / medians[2]
        point["control_interval_90"] = interval(rows[0], rows[2])
        point["control_cpu_ratio_of_medians"] = statistics.median(cpu[0]) / statistics.median(cpu[2]) if cpu_seen \
            else None
    return point


def paired(keys: list[str], models: list[str], concurrencies: list[int], rounds: int, seconds: float,
           control: bool = False, rows: int = 1) -> dict:
    dirs = model_dirs(models)
    names = [s.name for s in _make_systems(keys, control)]
    runs = {(m, c): [[] for _ in names] for m in models for c in concurrencies}
    logs = []  # each round's server logs, per system: what each instance measured at warm-up, for example
    for turn in range(rounds):
        systems = _make_systems(keys, control)
        _one_round(systems, dirs, models, concurrencies, seconds, turn, runs, rows)
        logs.append([str(s.log) for s in systems])
        print(f"round {turn + 1} of {rounds} done", flush=True)
    result = {"systems": names, "rounds": rounds, "seconds": seconds, "control": control, "rows_per_request": rows,
              "points": {}, "server_logs_by_round": logs}
    for model in models:
        for concurrency in concurrencies:
            point = result["points"].setdefault(model, {})[str(concurrency)] = _summary(runs[(model, concurrency)],
                                                                                       control)
            twin = f"; twin {point['control_ratio_of_medians']:.2f}x" if control else ""
            print(f"{model:12s} c={concurrency:<4d} {point['median_rows_per_s'][0]:9,.0f} against "
                  f"{point['median_rows_per_s'][1]:9,.0f} rows/s: {point['ratio_of_medians']:.2f}x "
                  f"(rounds {', '.join(f'{r:.2f}' for r in point['round_ratios'])}){twin}; server CPU per row "
                  f"{point['cpu_ratio_of_medians'] or float('nan'):.2f}x", flush=True)
    return result


def _span(bounds: list[float]) -> str:
    return f"{bounds[0]:.2f}-{bounds[1]:.2f}"


def write(result: dict, out: Path, stem: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2))
    first, second = result["systems"][:2]
    control = result["control"]
    lines = [f"# {first} against {second}, alternating windows ({result['date']})", "",
             f"Machine: {result['machine']}. {result['rounds']} rounds of {result['seconds']} s windows per point; "
             "every system is started afresh each round and they take turns at each point (who goes first "
             f"rotates); {result['rows_per_request']} instance(s) per request. The interval is a 90 % bootstrap "
             "interval of the ratio of medians, resampling whole rounds."
             + (" The twin is a second instance of the first system: its ratio is the noise floor." if control else ""),
             "", "| model | concurrency | rows/s (first) | rows/s (second) | ratio of medians | 90 % interval | "
             "each round | " + ("first against its twin: ratio, interval (each round) | " if control else "")
             + "server CPU us/row (first / second) | CPU ratio, interval" + (" (twin)" if control else "")
             + " | p99 ms (first / second) | errors |",
             "|---|---:|---:|---:|---:|---:|---|" + ("---|" if control else "") + "---:|---:|---:|---:|"]
    for model, points in result["points"].items():
        for concurrency, p in points.items():
            first_rows, second_rows = p["median_rows_per_s"][:2]
            twin = (f" {p['control_ratio_of_medians']:.2f}, {_span(p['control_interval_90'])} "
                    f"({', '.join(f'{r:.2f}' for r in p['control_round_ratios'])}) |" if control else "")
            cpu_ratio = (f"{p['cpu_ratio_of_medians']:.2f}, {_span(p['cpu_ratio_interval_90'])}"
                         + (f" ({p['control_cpu_ratio_of_medians']:.2f})" if control else "")
                         if p["cpu_ratio_of_medians"] is not None else "n/a")
            lines.append(f"| {model} | {concurrency} | {first_rows:,.0f} | {second_rows:,.0f}"
                         f" | {p['ratio_of_medians']:.2f} | {_span(p['ratio_interval_90'])}"
                         f" | {', '.join(f'{r:.2f}' for r in p['round_ratios'])} |{twin} "
                         f"{p['median_server_cpu_us_per_row'][0]:.1f} / {p['median_server_cpu_us_per_row'][1]:.1f} | "
                         f"{cpu_ratio} | "
                         f"{p['median_p99_ms'][0]:.1f} / {p['median_p99_ms'][1]:.1f} | {sum(p['errors'])} |")
    lines += ["", _verdict(result)]
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")


def _verdict(result: dict) -> str:
    """The lowest ratio, how many points reach 1.0, and which fall below 1.0 beyond doubt: their whole 90 %
    interval under 1.0. With a twin, also the points where identical code differed beyond doubt, which says the
    intervals understate the noise there."""
    points = {(m, c): p for m, per_model in result["points"].items() for c, p in per_model.items()}
    (worst_model, worst_c), worst = min(((k, p["ratio_of_medians"]) for k, p in points.items()), key=lambda kv: kv[1])
    line = (f"Lowest ratio of medians: {worst:.2f} ({worst_model} c={worst_c}); "
            f"{sum(p['ratio_of_medians'] >= 1.0 for p in points.values())} of {len(points)} points at 1.0 or above.")
    below = [f"{m} c={c} ({p['ratio_of_medians']:.2f}, {_span(p['ratio_interval_90'])})"
             for (m, c), p in points.items() if p["ratio_interval_90"][1] < 1.0]
    line += (f" Below 1.0 with the whole interval: {', '.join(below)}." if below
             else " No point's interval lies wholly below 1.0.")
    if result["control"]:
        apart = [f"{m} c={c} ({_span(p['control_interval_90'])})" for (m, c), p in points.items()
                 if not p["control_interval_90"][0] <= 1.0 <= p["control_interval_90"][1]]
        line += (f" The twin's interval leaves out 1.0 at: {', '.join(apart)}." if apart
                 else " The twin's interval holds 1.0 at every point.")
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", default="modelserve,modelserve-unbatched", help="two, from " + ", ".join(SYSTEMS))
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--concurrency", default="1,8,32,64,128")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rows", type=int, default=1, help="instances per request (64: bulk requests)")
    parser.add_argument("--control", action="store_true",
                        help="add a second instance of the first system: the noise floor at each point")
    parser.add_argument("--stem", default="paired")
    parser.add_argument("--out", type=Path, default=BENCH / "results")
    args = parser.parse_args()
    keys = args.systems.split(",")
    if len(keys) != 2 or set(keys) - set(SYSTEMS) or any(SYSTEMS[k]().one_model_at_a_time for k in keys):
        sys.exit(f"--systems takes two systems that serve all models at once, from {', '.join(SYSTEMS)}")
    result = paired(keys, args.models.split(","), [int(c) for c in args.concurrency.split(",")], args.rounds,
                    args.seconds, args.control, args.rows)
    result.update({"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                   "machine": describe_machine()})
    write(result, args.out, args.stem)
    print(f"results in {args.out / args.stem}.md")


if __name__ == "__main__":
    main()
