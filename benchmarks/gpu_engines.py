"""GPU figures that need no model store: bf16 training of each default recipe, and the served engines on CUDA.

The GPU machines this project is lent now and then carry PyTorch but not BentoML (onnxruntime-gpu travels there
as a wheel), so this script drives the training loop and the exports directly rather than through
`modelserve train`. For each default recipe: the training loop's samples/s and validation metric (bf16 autocast
on CUDA, fp32 on the CPU). Then the transformer exported to TorchScript and ONNX, each loaded by the service's
own engine on the device (ONNX Runtime's CUDA provider there), its outputs against the eager model's on the CPU,
and its rows/s at several batch sizes, for the default transformer and the heavy one
(benchmarks/heavy_transformer.toml, random weights: serving cost depends on the shapes). That last table is the
engine-side ceiling for what batching can gain there, and says which backend to serve with on a GPU.

    python benchmarks/gpu_engines.py                    # cuda where there is one, else cpu
    python benchmarks/gpu_engines.py --device cpu --quick
"""

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
import tomllib
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import models  # noqa: E402
from service.runtime.engines import load_engine  # noqa: E402
from training import data as datasets  # noqa: E402
from training.distributed import Runtime  # noqa: E402
from training.export import ServingGraph, export_onnx, parity_cases  # noqa: E402
from training.loop import TrainConfig, train  # noqa: E402
from training.recipes import RECIPES  # noqa: E402

HEAVY = REPO / "benchmarks" / "heavy_transformer.toml"
ENGINE_NAMES = {"onnx": "ONNX Runtime", "torchscript": "TorchScript"}


def data_config(model: str, dataset: datasets.Dataset, extra: dict) -> object:
    derived = ({"num_classes": dataset.n_outputs} if model == "transformer" else
               {"n_features": dataset.inputs.shape[1],
                ("n_targets" if model == "regression" else "n_outputs"): dataset.n_outputs})
    return models.make_config(model, {**RECIPES[model].model, **extra, **derived})


def train_recipe(model: str, device: torch.device, epochs: int | None) -> tuple[dict, torch.nn.Module]:
    recipe = RECIPES[model]
    config = TrainConfig(**{**recipe.train, "device": device.type, **({"epochs": epochs} if epochs else {})})
    dataset = datasets.BUILTIN[recipe.dataset](seed=0)
    train_split, val_split = dataset.split(config.val_fraction, config.seed)
    torch.manual_seed(config.seed)
    net = models.build_model(model, data_config(model, dataset, {}))
    runtime = Runtime(rank=0, world_size=1, device=device)
    with tempfile.TemporaryDirectory() as run_dir:
        result = train(model, net, train_split, val_split, config, runtime, Path(run_dir))
    return {"samples_per_s": result.samples_per_second, "steady_samples_per_s": result.steady_samples_per_second,
            "epochs": result.epochs_run, "metrics": result.metrics,
            "precision": "bf16 autocast" if device.type == "cuda" else "fp32"}, result.model


def time_batches(engine, max_len: int, vocab: int, sizes: list[int], seconds: float) -> dict:
    """Median rows/s of a served engine per batch size: numpy ids in, numpy scores out, as the service calls it
    (so host-device copies count; a CUDA engine's result is on the host when run returns)."""
    out = {}
    rng = np.random.default_rng(0)
    for size in sizes:
        ids = rng.integers(4, vocab, (size, max_len), dtype=np.int64)  # (B, L)
        for _ in range(5):
            engine.run(ids)
        rates = []
        for _ in range(5):
            calls, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds / 5:
                engine.run(ids)
                calls += 1
            rates.append(calls * size / (time.perf_counter() - started))
        out[size] = statistics.median(rates)
    return out


def served_engines_on(device: torch.device, net: torch.nn.Module, max_len: int, sizes: list[int],
                      seconds: float) -> dict:
    """Export the transformer both ways (the ONNX export's parity checked on the CPU as training does), load each
    file with the service's own engine on the device, and time it; diffs are against the eager model on the CPU."""
    graph = ServingGraph(net.eval().cpu(), classification=True).eval()
    vocab = net.config.vocab_size
    ids = torch.randint(4, vocab, (16, max_len))  # (16, L)
    with torch.inference_mode():
        expected = graph(ids)  # (16, K)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp)
        torch.jit.save(torch.jit.script(graph), str(model_dir / "model.pt"))
        export_onnx(graph, model_dir / "model.onnx", parity_cases(ids, "tokens", max_len), torch.ones(()),
                    "input_ids", "scores", max_len)
        for backend in ("onnx", "torchscript"):
            engine = load_engine(backend, model_dir, device.type, threads=torch.get_num_threads())
            diff = float(np.abs(engine.run(ids.numpy()) - expected.numpy()).max())
            results[backend] = {"max_abs_diff_vs_eager_cpu": diff,
                                "rows_per_s": time_batches(engine, max_len, vocab, sizes, seconds)}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--quick", action="store_true", help="1 epoch, short windows (for the test suite)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    epochs, seconds = (1, 0.25) if args.quick else (None, 5.0)
    sizes = [1, 8] if args.quick else [1, 8, 32, 64, 256]
    results = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "device": str(device),
               "machine": f"{platform.machine()}, torch {torch.__version__}"
                          + (f", {torch.cuda.get_device_name(0)}" if device.type == "cuda" else ""),
               "training": {}, "engines": {}}
    trained = {}
    for model in ("regression", "mlp", "transformer"):
        results["training"][model], trained[model] = train_recipe(model, device, epochs)
        print(model, results["training"][model], flush=True)
    heavy_cfg = tomllib.loads(HEAVY.read_text())["model"]
    dataset = datasets.BUILTIN[RECIPES["transformer"].dataset](seed=0)
    heavy = models.build_model("transformer", data_config("transformer", dataset, heavy_cfg))
    for name, net, max_len in (("transformer", trained["transformer"], 32),
                               ("transformer-heavy", heavy, heavy_cfg["max_len"])):
        results["engines"][name] = served_engines_on(device, net, max_len, sizes, seconds)
        print(name, results["engines"][name], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"gpu_engines-{device.type}"
    (args.out / f"{stem}.json").write_text(json.dumps(results, indent=2))
    lines = [f"# Training and the served engines on {device.type} ({results['date']})", "",
             f"Machine: {results['machine']}.", "",
             "| model | precision | samples/s | after epoch 1 | epochs | validation |", "|---|---|---:|---:|---:|---|"]
    for model, r in results["training"].items():
        metric = ", ".join(f"{k} {v:.4g}" for k, v in r["metrics"].items() if k != "loss")
        lines.append(f"| {model} | {r['precision']} | {r['samples_per_s']:,.0f} | {r['steady_samples_per_s']:,.0f} "
                     f"| {r['epochs']} | {metric} |")
    lines += ["", "The transformer's exports loaded by the service's engines on the device (fp32; ONNX Runtime "
              + ("with its CUDA provider" if device.type == "cuda" else "on the CPU") + "), rows/s by batch size "
              "(median of 5 windows, numpy ids in and scores out as the service calls them, so host-device copies "
              "count), and the largest difference from the eager model on the CPU:", "",
              "| model | engine | " + " | ".join(f"batch {s}" for s in sizes) + " | batch max / batch 1 | max diff |",
              "|---|---|" + "---:|" * (len(sizes) + 2)]
    for name, by_backend in results["engines"].items():
        for backend, r in by_backend.items():
            rates = r["rows_per_s"]
            lines.append(f"| {name} | {ENGINE_NAMES[backend]} | " + " | ".join(f"{rates[s]:,.0f}" for s in sizes)
                         + f" | {rates[sizes[-1]] / rates[1]:.1f}x | {r['max_abs_diff_vs_eager_cpu']:.1e} |")
    (args.out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print(f"results in {args.out / stem}.md")


if __name__ == "__main__":
    main()
