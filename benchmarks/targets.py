"""The serving targets, judged from one run's results: each one the run has the systems for, with the
measured figure, what was needed, and by how much it was met or missed.

Targets (transformer, one instance per request, c=64, unless said): modelserve (batched, ONNX) at
least 1.0x the hand-written FastAPI server's rows/s and 1.5x MLServer's, each with a p99 no worse,
with zero errors, and 2x the stock BentoML service's; batching never slower than batching off (every
model and concurrency); bulk requests at least 60 % of the raw engine at batch 64; the heavier
transformer batched at least 3x unbatched.
"""

MODEL, CONCURRENCY = "transformer", "64"
HEAVY = "transformer-heavy"


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
    for key, label, ratio in (("fastapi", "FastAPI", 1.0), ("mlserver", "MLServer", 1.5),
                              ("stock-bentoml", "stock BentoML", 2.0)):
        theirs = _point(results, key)
        if ours and theirs:
            rows.append(_row(f"{MODEL} c={CONCURRENCY}: rows/s against {label}",
                             ours["rows_per_s"] / theirs["rows_per_s"], ratio))
            if key != "stock-bentoml":
                rows.append(_row(f"{MODEL} c={CONCURRENCY}: p99 no worse than {label}'s ({theirs['p99_ms']:.1f} ms)",
                                 ours["p99_ms"], theirs["p99_ms"], higher_is_better=False, unit=" ms"))
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
