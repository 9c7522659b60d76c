"""Assemble everything a served model needs into one directory, with a manifest that vouches for it."""

import json
import platform
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import bentoml
import numpy as np
import onnx
import onnxruntime
import torch

from models import ByteTokenizer, config_to_dict, input_kind
from models.columns import MISSING_CODE
from models.manifest import MANIFEST, sha256_of
from training.choices import Choice
from training.data import Dataset
from training.export import PARITY_TOLERANCE, ServingGraph, export_onnx, export_torchscript, parity_cases
from training.loop import TrainConfig, TrainResult, primary_metric
from training.report import plot_loss_curve

CHECKPOINT = "checkpoint.pt"
TORCHSCRIPT = "model.pt"
ONNX = "model.onnx"
TOKENIZER = "tokenizer.json"
LOSS_CURVE = "loss_curve.png"


def io_schema(model_name: str, data: Dataset, config) -> tuple[list[dict], list[dict]]:
    """Input/output tensors in Open Inference Protocol terms; -1 marks a dynamic axis."""
    if input_kind(model_name) == "tokens":
        # The shortest and longest sequence in the training split, and the ids it holds: the service counts
        # instances outside them (drift).
        lengths = (data.inputs != config.pad_id).sum(1)  # (N,)
        seen = sorted(set(data.inputs.unique().tolist()) - {config.pad_id})
        # `truncate`: the service reads a longer text on its first max_len tokens, as training read a user's texts;
        # without it (the built-in sequences) it refuses one.
        user_texts = data.truncated_texts is not None  # (a user's file, not the built-in sequences)
        inputs = [{"name": "input_ids", "datatype": "INT64", "shape": [-1, -1], "max_len": config.max_len,
                   "truncate": user_texts, "vocab_size": config.vocab_size, "pad_id": config.pad_id,
                   "training_lengths": {"min": int(lengths.min()), "max": int(lengths.max())},
                   "training_tokens": seen}]
        if user_texts:  # the columns a client may send by name: joined as training joined them
            inputs[0]["text_columns"] = list(data.feature_names)
    else:
        # Each feature's range in the training split, gaps aside: the service counts instances outside it (drift).
        # A categorical column's range is all its codes, 0 (missing or unseen) included: the service counts unseen
        # categories itself, by name, where it maps them.
        values = data.inputs.numpy()  # (N, F)
        low, high = np.nanmin(values, axis=0), np.nanmax(values, axis=0)  # (F,)
        for j, column in enumerate(data.columns or []):
            if column.is_categorical:
                low[j], high[j] = MISSING_CODE, len(column.vocabulary)
        inputs = [{"name": "features", "datatype": "FP32", "shape": [-1, len(data.feature_names)],
                   "training_range": {"min": low.tolist(), "max": high.tolist()}}]
    name = "predictions" if data.task == "regression" else "probabilities"
    return inputs, [{"name": name, "datatype": "FP32", "shape": [-1, data.n_outputs]}]


def column_specs(model, data: Dataset) -> list[dict] | None:
    """Each input column as the manifest records it (models/columns.py), with the fill value the graph uses."""
    if data.columns is None:
        return None
    fill = iter(model.encoder.fill.tolist())  # (the numeric columns' medians, in column order)
    return [(column if column.is_categorical else replace(column, fill_value=next(fill))).to_dict()
            for column in data.columns]


def build_artifacts(out: Path, model_name: str, result: TrainResult, train: Dataset, val: Dataset,
                    train_config: TrainConfig, device: str, world_size: int = 1,
                    choices: list[Choice] | None = None) -> dict:
    """Write checkpoint, TorchScript, ONNX (both parity-checked), tokenizer, loss curve and manifest."""
    model, config = result.model, result.model.config
    kind = input_kind(model_name)
    classification = train.task != "regression"
    inputs, outputs = io_schema(model_name, train, config)

    torch.save({"model_name": model_name, "model_config": config_to_dict(config),
                "state_dict": model.state_dict(), "optimizer": result.optimizer_state,
                "train_config": vars(train_config)}, out / CHECKPOINT)

    graph = ServingGraph(model, classification).eval()
    max_len = getattr(config, "max_len", None) if kind == "tokens" else None
    cases = parity_cases(val.inputs, kind, max_len, train.columns)
    scale = torch.ones(1) if classification else train.targets.std(0).clamp(min=1e-12)
    parity = export_torchscript(graph, out / TORCHSCRIPT, cases, scale)
    parity += export_onnx(graph, out / ONNX, cases, scale, inputs[0]["name"], outputs[0]["name"], max_len)

    if kind == "tokens":
        ByteTokenizer().save(out / TOKENIZER)
    metric = primary_metric(train.task)
    plot_loss_curve(result.history, metric, out / LOSS_CURVE, f"{model_name} on {train.source}")

    manifest = {
        "format_version": 1,
        "model": model_name,
        "task": train.task,
        "input_kind": kind,
        "feature_names": train.feature_names,
        "columns": column_specs(model, train),
        "target_names": train.target_names,
        "class_names": train.class_names,
        "inputs": inputs,
        "outputs": outputs,
        "model_config": config_to_dict(config),
        "train_config": vars(train_config),
        "data": {"source": train.source, "train_rows": len(train), "val_rows": len(val),
                 "dropped_rows_without_target": train.dropped_rows,
                 "dropped_rows_without_text": train.dropped_rows_without_text,
                 "truncated_texts": train.truncated_texts},
        "choices": [c.as_dict() for c in choices or []],
        "primary_metric": metric,
        "metrics": result.metrics,
        "epochs_run": result.epochs_run,
        "refit_epochs": result.refit_epochs,
        "train_samples_per_second": round(result.samples_per_second, 1),
        "train_samples_per_second_after_first_epoch": round(result.steady_samples_per_second, 1),
        "trained_on": device,
        "world_size": world_size,
        "parity": {"tolerance": PARITY_TOLERANCE, "results": [p.as_dict() for p in parity],
                   "max_abs_diff": max(p.max_abs_diff for p in parity)},
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "onnx": onnx.__version__,
                     "onnxruntime": onnxruntime.__version__, "bentoml": bentoml.__version__,
                     "numpy": np.__version__},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "files": {p.name: sha256_of(p) for p in sorted(out.iterdir())},
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest
