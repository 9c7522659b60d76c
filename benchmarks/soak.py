"""Soak: a long window of load over every default model, then proof that nothing was lost or leaked.

wrk (one thread, keep-alive, loopback) sends v1 requests to the three default models in turn for `--seconds` at
`--concurrency`. Afterwards: every answer was a 2xx; the service's own request counter
(`bentoml_service_request_total`, summed over the prediction routes and workers) grew by exactly what wrk counted,
give or take the requests in flight when the window closed (at most one per connection); and the server's
resident memory (main process and workers) after the soak is within `--rss-tolerance` of after warm-up.

    python benchmarks/soak.py                                   # 60 s at concurrency 64, results in results/
    python benchmarks/soak.py --seconds 3 --concurrency 8 --out /tmp/soak   # the suite's short version
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from benchmarks.measure import describe_machine, tree_rss_mb  # noqa: E402

BODIES = {  # model -> instances of one request (raw values, as clients send them)
    "regression": [[120.0, 15.0]],
    "mlp": [[0.5]],
    "transformer": ["xqazzbk"],
}
PREDICTION_ENDPOINT = re.compile(r'endpoint="/v(?:1/models/[^"]+:predict|2/models/[^"]+/infer)"')


def served_requests(url: str) -> float:
    """2xx answers the service has counted on its prediction routes (every worker; the endpoint label is the
    served model's path)."""
    total = 0.0
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith("bentoml_service_request_total{") and PREDICTION_ENDPOINT.search(line) \
                and 'http_response_code="2' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def run_wrk(url: str, concurrency: int, seconds: int) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".requests", delete=False) as f:
        for name, instances in BODIES.items():
            f.write(f"/v1/models/{name}:predict\t{json.dumps({'instances': instances})}\n")
    try:
        out = subprocess.run(["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "--timeout", "10s", "-s",
                              str(REPO / "benchmarks" / "wrk_mixed.lua"), url], capture_output=True, text=True,
                             check=True, env={**os.environ, "WRK_REQUESTS_FILE": f.name})
    finally:
        os.unlink(f.name)
    return json.loads(out.stdout.strip().splitlines()[-1])


def soak(server, concurrency: int, seconds: int, rss_tolerance: float) -> dict:
    """Warm up, measure, soak, measure again; the verdicts under "checks"."""
    run_wrk(server.url, concurrency, 2)  # warm-up: every path and the allocator's working set
    rss_before, counted_before = tree_rss_mb(server.process), served_requests(server.url)
    stats = run_wrk(server.url, concurrency, seconds)
    rss_after, counted_after = tree_rss_mb(server.process), served_requests(server.url)
    errors = sum(stats[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts"))
    counted = counted_after - counted_before
    return {"concurrency": concurrency, "seconds": stats["duration_us"] / 1e6, "requests": stats["requests"],
            "requests_per_s": stats["requests"] / (stats["duration_us"] / 1e6), "errors": errors,
            "p50_ms": stats["p50_us"] / 1e3, "p99_ms": stats["p99_us"] / 1e3, "server_counted": counted,
            "rss_after_warm_up_mb": rss_before, "rss_after_soak_mb": rss_after,
            "checks": {"no_errors": errors == 0,
                       # wrk counts what was answered; a request answered as the window closed may be counted by
                       # the server and not by wrk: at most one per connection
                       "counters_match": 0 <= counted - stats["requests"] <= concurrency,
                       "rss_within_tolerance": rss_after <= rss_before * (1 + rss_tolerance)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rss-tolerance", type=float, default=0.10)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--train-missing", action=argparse.BooleanOptionalAction, default=True,
                        help="train the default models the store lacks first")
    args = parser.parse_args()
    home = Path(os.environ.get("BENTOML_HOME", Path.home() / "bentoml"))  # (read first: tests.paths resets it)
    from tests.servers import Server  # the test suite's real-server helper: `modelserve serve` on a free port

    for name in BODIES if args.train_missing else ():  # the default models the store lacks (as `make run` does)
        subprocess.run([sys.executable, "-m", "training.cli", "train", name, "--if-missing", "--run-dir",
                        str(Path(tempfile.gettempdir()) / f"modelserve-soak-runs/{name}")], cwd=REPO, check=True,
                       capture_output=True, env={**os.environ, "BENTOML_HOME": str(home), "PYTHONPATH": str(REPO)})
    with tempfile.TemporaryDirectory(prefix="modelserve-soak-") as tmp:
        server = Server(Path(tmp) / "server.log", store=home / "models", workers=args.workers)
        try:
            server.wait_until("/readyz")
            result = soak(server, args.concurrency, args.seconds, args.rss_tolerance)
        finally:
            server.stop()
    result.update(when=datetime.now(timezone.utc).isoformat(timespec="seconds"), machine=describe_machine(),
                  workers=args.workers, models=list(BODIES))
    write(result, args.out, "soak" if args.seconds >= 60 else "soak_quick")
    sys.exit(0 if all(result["checks"].values()) else 1)


def write(result: dict, out: Path, stem: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2))
    checks = result["checks"]
    lines = [f"# Soak ({result['when']})", "",
             f"{result['machine']}; modelserve with {result['workers']} workers, ONNX; wrk 1 thread, "
             f"{result['concurrency']} connections, loopback, v1 requests to {', '.join(result['models'])} in turn.",
             "", "| seconds | requests | req/s | non-2xx or socket errors | p50 ms | p99 ms | server counted | "
             "RSS after warm-up MiB | RSS after soak MiB |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
             f"| {result['seconds']:.1f} | {result['requests']:,} | {result['requests_per_s']:,.0f} | "
             f"{result['errors']} | {result['p50_ms']:.2f} | {result['p99_ms']:.2f} | "
             f"{result['server_counted']:,.0f} | "
             f"{result['rss_after_warm_up_mb']:.0f} | {result['rss_after_soak_mb']:.0f} |", "",
             f"No errors: {'yes' if checks['no_errors'] else 'NO'}. Server's count = wrk's (+ at most one in flight "
             f"per connection): {'yes' if checks['counters_match'] else 'NO'}. RSS within tolerance: "
             f"{'yes' if checks['rss_within_tolerance'] else 'NO'}."]
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
