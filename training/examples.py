"""Ready-to-paste requests for the models in the store, built from their manifests."""

import json
from pathlib import Path

from models.manifest import MANIFEST
from training.data import HOUSING_COEFFICIENTS
from training.store import list_models

EXAMPLE_TEXT = ["xqazzbk", "kbzzaq"]  # the order task: is 'a' before 'b'?


def example_instances(manifest: dict) -> list:
    if manifest["input_kind"] == "tokens":
        columns = manifest["inputs"][0].get("text_columns") or []
        if len(columns) > 1:  # an object keyed by text column, as the rows were read in training
            return [{c: f"some {c}" for c in columns}, {**{c: f"some {c}" for c in columns}, columns[-1]: None}]
        return EXAMPLE_TEXT
    names = manifest["feature_names"]
    if names == list(HOUSING_COEFFICIENTS)[1:]:
        return [[120.0, 15.0], {"area_m2": 80.0, "age_years": 40.0}]
    columns = manifest.get("columns")
    if columns:  # an object keyed by column: a category from the vocabulary, a number near the median, a gap
        row = {c["name"]: c["vocabulary"][0] if c["kind"] == "categorical" else c["fill_value"] for c in columns}
        numeric = [c["name"] for c in columns if c["kind"] == "numeric"]
        return [row, {**row, numeric[0]: None}] if numeric else [row]
    return [[round(0.5 * (i + 1), 2) for i in range(len(names))]]


def curl_examples(url: str) -> list[str]:
    lines, seen = [], set()
    for model in list_models():
        if model.tag.name in seen:
            continue
        seen.add(model.tag.name)
        manifest = json.loads((Path(model.path) / MANIFEST).read_text())
        body = json.dumps({"instances": example_instances(manifest)})
        lines.append(f"# {model.tag.name}: {manifest['task']} on {manifest['data']['source']}")
        lines.append(f"curl -s -X POST {url}/v1/models/{model.tag.name}:predict "
                     f"-H 'Content-Type: application/json' -d '{body}'")
    return lines
