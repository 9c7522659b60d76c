"""The serving targets, judged from one run's results: each one the run has the systems for, with the
measured figure, what was needed, and by how much it was met or missed.

Targets (transformer, one instance per request, every system with the same number of server processes):
modelserve (batched, ONNX) at least 1.2x every peer's rows/s at c=64 and 1.0x at c=1 and 8, each with a p99 no
worse, and 2x Triton's (through PyTriton) at c=64; zero errors; bulk (64 instances a request) at least 1.0x every
peer's rows/s and 60 % of the raw engine at batch 64; batching never slower than batching off (every model and
concurrency); the heavier transformer batched at least 3x unbatched.
"""

MODEL, CONCURRENCY = "transformer", "64"
HEAVY = "transformer-heavy"
PEERS = {"fastapi": "FastAPI", "mlserver": "MLServer", "stock-bentoml": "stock BentoML", "ray-serve": "Ray Serve",
         "litserve": "LitServe", "kserve": "KServe", "triton": "Triton (PyTriton)"}
NEEDED = {"1": 1.0, "8": 1.0, "64": 1.2}  # rows/s against each peer, by concurrency
NEEDED_AGAINST_TRITON_AT_64 = 2.0


def _point(results: dict, key: str, model: str = MODEL, concurrency: str = CONCURRENCY) -> dict | None:
    name = results.get("system_keys", {}).get(key)
    return results["systems"].get(name, {}).get(model, {}).get(concurrency) if name else None


def _row(target: str, measured: float, needed: float, higher_is_better: bool = True, unit: str = "x") -> dict:
    met = measured >= needed if higher_is_better else measured <= needed
    return {"target": target, "measured": measured, "needed": needed, "unit": unit, "met": met,
            "higher_is_better": higher_is_better}


def judge(results: dict) -> list[dict]:
    rows = []
    ours = _point(results, "modelserve")
    for key, label in PEERS.items():
        for concurrency, needed in NEEDED.items():
            mine, theirs = _point(results, "modelserve", concurrency=concurrency), _point(results, key,
                                                                                          concurrency=concurrency)
            if not (mine and theirs):
                continue
            if key == "triton" and concurrency == "64":
                needed = NEEDED_AGAINST_TRITON_AT_64
            rows.append(_row(f"{MODEL} c={concurrency}: rows/s against {label}",
                             mine["rows_per_s"] / theirs["rows_per_s"], needed))
            rows.append(_row(f"{MODEL} c={concurrency}: p99 no worse than {label}'s ({theirs['p99_ms']:.1f} ms)",
                             mine["p99_ms"], theirs["p99_ms"], higher_is_better=False, unit=" ms"))
        mine_bulk, their_bulk = (results.get("bulk", {}).get(results.get("system_keys", {}).get(k), {}).get(MODEL)
                                 for k in ("modelserve", key))
        if mine_bulk and their_bulk:
            rows.append(_row(f"bulk {MODEL}: rows/s against {label}", mine_bulk["rows_per_s"] /
                             their_bulk["rows_per_s"], 1.0))
    if ours:
        rows.append(_row(f"{MODEL} c={CONCURRENCY}: errors", ours["errors"], 0, higher_is_better=False, unit=""))
    rows += _batching_rows(results)
    batched = results.get("system_keys", {}).get("modelserve")
    ceiling = results.get("bulk", {}).get(results.get("system_keys", {}).get("http-ceiling"), {})
    for model, point in results.get("bulk", {}).get(batched, {}).items():
        if model != HEAVY:
            # beside it, what a server doing nothing but HTTP reached: the bound no server on uvicorn passes
            bound = (f" (the HTTP ceiling, a server doing nothing: {ceiling[model]['served_over_raw_batch64']:.2f}x)"
                     if model in ceiling else "")
            rows.append(_row(f"bulk {model}: served rows/s of the raw engine at batch {results['bulk_rows']}{bound}",
                             point["served_over_raw_batch64"], 0.6))
    heavy, heavy_unbatched = _point(results, "modelserve", HEAVY), _point(results, "modelserve-unbatched", HEAVY)
    if heavy and heavy_unbatched:
        rows.append(_row(f"{HEAVY} c={CONCURRENCY}: batched against unbatched",
                         heavy["rows_per_s"] / heavy_unbatched["rows_per_s"], 3.0))
    return rows


def _batching_rows(results: dict) -> list[dict]:
    """Batching on against off at every model and concurrency both ran: the worst point decides."""
    on = results["systems"].get(results.get("system_keys", {}).get("modelserve"), {})
    off = results["systems"].get(results.get("system_keys", {}).get("modelserve-unbatched"), {})
    ratios = {(model, c): p["rows_per_s"] / off[model][c]["rows_per_s"]
              for model, points in on.items() for c, p in points.items() if c in off.get(model, {})}
    if not ratios:
        return []
    below = sorted((point for point, ratio in ratios.items() if ratio < 1.0), key=ratios.get)
    (model, c), worst = min(ratios.items(), key=lambda item: item[1])
    where = "; below 1.0 at " + ", ".join(f"{m} c={cc} ({ratios[(m, cc)]:.2f})" for m, cc in below) if below else ""
    return [_row(f"batching on against off, worst of {len(ratios)} points in single windows ({model} c={c}){where}; "
                 "paired.md compares them side by side", worst, 1.0)]


def markdown(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    lines = ["## Targets", "", "| target | measured | needed | verdict |", "|---|---:|---:|---|"]
    for row in rows:
        measured, needed = row["measured"], row["needed"]
        if row["met"]:
            verdict = "met"
        elif row["unit"] == "x":
            verdict = f"**missed** by {(1 - measured / needed) * 100:.0f} %"
        else:
            verdict = f"**missed** by {abs(measured - needed):.1f}{row['unit']}"
        fmt = "{:.2f}" if row["unit"] == "x" else "{:.1f}" if row["unit"] else "{:.0f}"
        lines.append(f"| {row['target']} | {fmt.format(measured)}{row['unit']} | "
                     f"{'≥' if row['higher_is_better'] else '≤'} {fmt.format(needed)}{row['unit']} | {verdict} |")
    return lines + [""]
