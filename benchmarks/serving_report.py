"""The serving benchmark's report: markdown tables and the throughput / p99 plot, from the results dict."""

import json
from pathlib import Path

from targets import judge, markdown

PROFILING_NOTES = Path(__file__).with_name("profiling.md")


def _cpu(point: dict) -> str:
    """The server's CPU time per served row (its process and workers); blank in results from before it was kept."""
    cpu = point.get("server_cpu_us_per_row")
    return "" if cpu is None or cpu != cpu else f"{cpu:,.1f}"


def _spread(point: dict) -> str:
    """Each pass's rows/s, in the order run; blank in results from before passes were kept."""
    return " / ".join(f"{r:,.0f}" for r in point.get("passes_rows_per_s", []))


def write_report(results: dict, out: Path, stem: str, concurrencies: list[int]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(results, indent=2))
    passes = results.get("passes", 1)
    lines = [f"# Serving benchmark ({results['date']})", "", f"Machine: {results['machine']}. One instance per "
             f"request, wrk with 1 thread, {results['seconds']} s windows after a warm-up; every system in turn "
             f"in one run, {results.get('workers', '?')} server processes each (named in each row) and one ONNX "
             f"Runtime thread per engine call. Each figure is the median of {passes} pass(es) with the systems' "
             "order rotated between passes; `rows/s per pass` shows the spread. Non-2xx answers count as errors "
             "(summed over the passes), not throughput.", ""]
    lines += markdown(judge(results))
    for system, reasons in results.get("failed", {}).items():
        lines += [f"**{system} failed in {len(reasons)} of {passes} passes** (its figures are from the others): "
                  + "; ".join(r.strip().splitlines()[-1] for r in reasons), ""]
    for model, raw in results["raw"].items():
        formed = ", ".join(f"{raw[b]:,.0f} at batch {b}" for b in raw)
        where = "CUDA provider" if results.get("raw_device") == "cuda" else "1 thread"
        lines += [f"## {model}", "", f"Raw engine (ONNX Runtime, {where}, in-process), rows/s: {formed}.", "",
                  "| system | concurrency | rows/s | rows/s per pass | p50 ms | p95 ms | p99 ms | errors | "
                  "rows/engine call | served/raw (batch 1) | raw at that batch | server CPU µs/row | wrk CPU s |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for system, per_model in results["systems"].items():
            for concurrency, p in per_model.get(model, {}).items():
                call = f"{p['rows_per_engine_call']:.1f}" if "rows_per_engine_call" in p else ""
                raw_there = f"{p['raw_at_formed_batch']:,.0f}" if "raw_at_formed_batch" in p else ""
                lines.append(f"| {system} | {concurrency} | {p['rows_per_s']:,.0f} | {_spread(p)} | "
                             f"{p['p50_ms']:.1f} | {p['p95_ms']:.1f} | {p['p99_ms']:.1f} | {p['errors']} | {call} | "
                             f"{p['served_over_raw_batch1']:.2f} | {raw_there} | {_cpu(p)} | {p['wrk_cpu_s']:.1f} |")
        lines.append("")
    if results["bulk"]:
        lines += [f"## Bulk: {results['bulk_rows']} instances per request, concurrency {results['bulk_concurrency']}",
                  "", f"| system | model | rows/s | rows/s per pass | of raw engine at batch {results['bulk_rows']} | "
                  "p99 ms | errors | server CPU µs/row |", "|---|---|---:|---:|---:|---:|---:|---:|"]
        for system, per_model in results["bulk"].items():
            for model, p in per_model.items():
                lines.append(f"| {system} | {model} | {p['rows_per_s']:,.0f} | {_spread(p)} | "
                             f"{p['served_over_raw_batch64']:.2f} | "
                             f"{p['p99_ms']:.1f} | {p['errors']} | {_cpu(p)} |")
        lines.append("")
    lines += ["## Memory: peak resident set of the server and its workers during its runs", "",
              "| system | peak RSS MiB |", "|---|---:|"]
    lines += [f"| {system} | {mb:,.0f} |" for system, mb in results["peak_rss_mb"].items()]
    if results.get("memory_by_max_batch_size"):
        lines += ["", "## Memory against modelserve's max batch size (all models loaded, bulk load on the last)", "",
                  "| max batch size | idle MiB | peak under bulk load MiB | bulk rows/s | errors |",
                  "|---:|---:|---:|---:|---:|"]
        lines += [f"| {size} | {m['idle_mb']:,.0f} | {m['peak_mb']:,.0f} | {m['rows_per_s']:,.0f} | {m['errors']} |"
                  for size, m in results["memory_by_max_batch_size"].items()]
    if PROFILING_NOTES.exists():  # what profiling found: kept by hand beside the script, the same for every run
        lines += ["", PROFILING_NOTES.read_text().strip()]
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
