"""`modelserve` command line: train a model, list the store, promote a version, serve."""

import argparse
import json
import sys
from pathlib import Path

import models
from training.errors import DataError, ParityError

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelserve", description="Train, export and serve modelserve models.")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a model, export it and save it into the BentoML model store")
    train.add_argument("model", choices=_ModelNames(), metavar="MODEL",
                       help="architecture to train (an unknown name is refused with the list of known ones)")
    train.add_argument("--name", help="name in the model store (default: the architecture's name)")
    train.add_argument("--data", type=Path, help="CSV or Parquet file with named columns (default: built-in data)")
    train.add_argument("--target", help="column to predict (with --data)")
    train.add_argument("--features", type=_names, help="comma-separated feature columns (default: every column but "
                                                        "the target)")
    train.add_argument("--exclude", type=_names, help="comma-separated columns to leave out of the features (an "
                                                       "identifier, free text, an empty column)")
    train.add_argument("--categorical", type=_names, help="comma-separated columns to read as categories, integer "
                                                           "codes among them (default: columns holding text)")
    train.add_argument("--numeric", type=_names, help="comma-separated columns to read as numbers (default: columns "
                                                       "holding numbers)")
    train.add_argument("--task", choices=models.TASKS)
    train.add_argument("--epochs", type=int)
    train.add_argument("--batch-size", type=int)
    train.add_argument("--lr", type=float)
    train.add_argument("--device", choices=("auto", "cpu", "cuda"))
    train.add_argument("--seed", type=int)
    train.add_argument("--solver", choices=("gradient", "lstsq"),
                       help="regression: lstsq solves least squares exactly (its default), gradient trains by steps")
    train.add_argument("--compile", action="store_true", default=None,
                       help="train through torch.compile (the exports are the same eager graph)")
    train.add_argument("--config", type=Path, help="TOML file with [model], [train] and [data] tables")
    train.add_argument("--run-dir", type=Path, help="where per-epoch checkpoints go (default: runs/NAME)")
    train.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.pt")
    train.add_argument("--dry-run", action="store_true", help="one epoch on a few rows; export and check, save nothing")
    train.add_argument("--if-missing", action="store_true", help="do nothing if the store already has NAME")

    listing = commands.add_parser("models", help="list the models in the store")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")

    promote = commands.add_parser("promote", help="serve a stored version held back because it breaks the clients of "
                                                  "the versions before it, in every server following the store")
    promote.add_argument("--undo", action="store_true", help="hold the version back again")
    promote.add_argument("tag", metavar="NAME:VERSION", help="as `modelserve models` lists it, which also says what "
                                                               "holds each version back")

    serve = commands.add_parser("serve", help="serve models over HTTP (bentoml serve of service.app)",
                                description="Flags override MODELSERVE_* environment variables. The API key "
                                            "is read from MODELSERVE_API_KEY only, never from a flag.")
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--port", type=_positive, default=3000)
    serve.add_argument("--models", help="comma-separated store tags (default: regression, mlp, transformer :latest)")
    serve.add_argument("--backend", choices=("onnx", "torchscript"))
    serve.add_argument("--device", choices=("auto", "cpu", "cuda"))
    serve.add_argument("--batching", choices=("true", "false"), help="adaptive batching across requests")
    serve.add_argument("--log-format", choices=("text", "json"), help="json: a JSON object per log line and an "
                                                                      "access line per request")
    for flag in SERVE_INT_FLAGS:
        serve.add_argument(f"--{flag}", type=_positive)
    serve.add_argument("--watch", type=_positive, metavar="SECONDS", dest="watch_seconds",
                       help="look at the store this often and serve a new version of each NAME:latest model once "
                            "verified and warmed up, without a restart")
    serve.add_argument("--version-policy", metavar="JSON", help="per model: versions served, traffic weights, shadow; "
                       'e.g. \'{"mlp": {"latest": 2, "weights": {"latest": 10, "previous": 90}}}\' (README)')

    bench = commands.add_parser("bench", help="run a benchmark script from the checkout's benchmarks/",
                                description="Runs benchmarks/serving.py, paired.py, train_throughput.py, "
                                            "real_data.py, soak.py or perf_analyzer.py; "
                                            "arguments after the name go to the script (try: bench serving -h).")
    bench.add_argument("benchmark", choices=sorted(BENCHMARKS))
    bench.add_argument("script_args", nargs=argparse.REMAINDER, help="passed to the benchmark script")

    examples = commands.add_parser("examples", help="print a ready-to-paste curl for each model in the store")
    examples.add_argument("--url", default="http://127.0.0.1:3000")
    return parser


class _ModelNames:
    """The registry's architecture names, read when `train` is parsed: the registry imports torch, which the
    other commands (`serve` among them, at every server start) need not wait 2-3 s for."""

    def __iter__(self):
        return iter(sorted(models.REGISTRY))

    def __contains__(self, name: object) -> bool:
        return name in models.REGISTRY


BENCHMARKS = {"serving": "serving.py", "paired": "paired.py", "training": "train_throughput.py",
              "real-data": "real_data.py", "soak": "soak.py", "perf-analyzer": "perf_analyzer.py"}
SERVE_INT_FLAGS = ("max-batch-size", "max-latency-ms", "max-instances", "max-body-bytes", "max-queue", "workers",
                   "engine-threads")


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _serve(args: argparse.Namespace) -> int:
    """Exec `bentoml serve` with the settings in the environment; the service reads them at import."""
    import os

    env = dict(os.environ)
    for name in ("models", "backend", "device", "batching", "log_format", "watch_seconds", "version_policy",
                 *(f.replace("-", "_") for f in SERVE_INT_FLAGS)):
        value = getattr(args, name)
        if value is not None:
            env[f"MODELSERVE_{name.upper()}"] = str(value)
    # service.launcher is `bentoml serve` with one listening socket per worker (see its docstring).
    os.execve(sys.executable, [sys.executable, "-m", "service.launcher", "serve", "service.app:ModelServe",
                               "--host", args.host, "--port", str(args.port)], env)
    return 0  # not reached


def _bench(args: argparse.Namespace) -> int:
    """The benchmarks live in the source checkout (they start peers and load generators), not in the wheel."""
    import os
    import subprocess

    script = Path(__file__).resolve().parent.parent / "benchmarks" / BENCHMARKS[args.benchmark]
    if not script.is_file():
        raise RuntimeError(f"modelserve bench runs the scripts of a source checkout; {script} does not exist")
    return subprocess.run([sys.executable, str(script), *args.script_args], cwd=script.parent.parent,
                          env={**os.environ, "PYTHONPATH": str(script.parent.parent)}).returncode


def _examples(args: argparse.Namespace) -> int:
    from training.examples import curl_examples

    for line in curl_examples(args.url):
        print(line)
    return 0


def _train(args: argparse.Namespace) -> int:
    from training.job import JobOptions, run  # heavy imports only for the command that needs them

    overrides = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "device": args.device,
                 "seed": args.seed, "compile": args.compile, "solver": args.solver}
    run(JobOptions(model=args.model, name=args.name, data=args.data, target=args.target, features=args.features,
                   exclude=args.exclude, categorical=args.categorical, numeric=args.numeric,
                   task=args.task, config_file=args.config, overrides=overrides, run_dir=args.run_dir,
                   resume=args.resume, dry_run=args.dry_run, if_missing=args.if_missing))
    return 0


def _models(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from training.store import list_models, versions_of

    rows, held = [], {}
    for model in list_models():
        meta = model.info.metadata
        if model.tag.name not in held:
            held[model.tag.name] = versions_of(model.tag.name)[1]
        metric = next((k for k in ("r2", "accuracy") if k in meta), None)
        rows.append({"tag": str(model.tag), "task": meta.get("task", "?"),
                     "metric": f"{metric}={meta[metric]:.4f}" if metric else "",
                     "created": model.info.creation_time.isoformat(timespec="seconds"),
                     "held back": held[model.tag.name].get(model.tag.version, "")})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = Table(title="modelserve models")
    for column in ("tag", "task", "metric", "created", "held back"):
        table.add_column(column, no_wrap=column == "tag", overflow="fold")  # (the whole tag: `promote` takes it)
    for row in rows:
        table.add_row(*row.values())
    Console().print(table)
    return 0


def _promote(args: argparse.Namespace) -> int:
    import bentoml

    from training.store import promote

    version = args.tag.partition(":")[2]
    if not version or version == "latest":
        raise ValueError(f"name the version to promote as `modelserve models` lists it (NAME:VERSION): {args.tag!r}")
    try:
        tag, held_for = promote(args.tag, undo=args.undo)
    except bentoml.exceptions.NotFound:
        raise ValueError(f"{args.tag!r} is not in the model store (`modelserve models` lists it)") from None
    if held_for is None:
        print(f"{tag}: {'promotion undone' if args.undo else 'promoted'}; it breaks no clients of the versions before "
              f"it, so what is served does not change")
    elif args.undo:
        print(f"{tag} held back again, as {held_for}: servers following the store go back to the versions before "
              f"it within their watch interval, and so do restarts and new replicas")
    else:
        print(f"{tag} promoted, although {held_for}: servers following the store serve it within their watch "
              f"interval, and so do restarts and new replicas")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return {"train": _train, "models": _models, "serve": _serve, "examples": _examples,
                "bench": _bench, "promote": _promote}[args.command](args)
    except (DataError, ValueError) as exc:
        print(f"modelserve {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ParityError as exc:
        print(f"modelserve {args.command}: export failed the parity check: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except RuntimeError as exc:
        print(f"modelserve {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
