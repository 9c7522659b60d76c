"""KServe v1 / TF-Serving JSON: {"instances": [...]} -> {"predictions": [...]}. The instances are parsed by the
model's schema (runtime/schema.py)."""

import numpy as np

from service.runtime.registry import ServedModel


def format_predictions(model: ServedModel, outputs: np.ndarray) -> list | np.ndarray:
    """Numbers for one regression target, a list per instance for several; label + probabilities otherwise."""
    if model.task == "regression":
        return outputs[:, 0] if outputs.shape[1] == 1 else outputs  # orjson writes numpy arrays directly
    classes = model.manifest["class_names"]
    labels = outputs.argmax(axis=1)
    return [{"label": classes[label], "probabilities": dict(zip(classes, row))}
            for label, row in zip(labels.tolist(), outputs.tolist())]


def model_metadata(model: ServedModel, versions) -> dict:
    """`versions`: the model's ModelVersions (lifecycle/versions.py)."""
    manifest = model.manifest
    return {
        "name": model.name, "tag": model.artifacts.tag, "version": model.artifacts.version,
        "backend": model.backend, "device": model.device, "ready": model.ready, "task": model.task,
        "input_kind": manifest["input_kind"], "feature_names": manifest["feature_names"],
        "columns": manifest.get("columns"),
        "class_names": manifest["class_names"], "inputs": manifest["inputs"], "outputs": manifest["outputs"],
        "metrics": manifest["metrics"], "created": manifest["created"], "versions": versions.describe(),
    }
