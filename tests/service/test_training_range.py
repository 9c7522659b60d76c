"""Instances outside the training range are answered as usual and counted per feature in /metrics."""

import httpx
import numpy as np
import pytest

from service.training_range import TrainingRange
from tests.service.test_metrics import scrape, total

SERIES = "modelserve_inputs_outside_training_range_total"


def test_out_of_range_instances_are_answered_and_counted_per_feature(onnx_server, trained):
    low, high = trained["regression"]["manifest"]["inputs"][0]["training_range"].values()  # area_m2, age_years
    inside = [(low[0] + high[0]) / 2, (low[1] + high[1]) / 2]
    before = scrape(onnx_server.url)
    v1 = httpx.post(f"{onnx_server.url}/v1/models/regression:predict", timeout=30, json={"instances": [
        inside, [high[0] * 400, inside[1]], {"area_m2": low[0] - 1, "age_years": inside[1]},
        [high[0] + 1, high[1] + 1]]})
    v2 = httpx.post(f"{onnx_server.url}/v2/models/regression/infer", timeout=30, json={"inputs": [
        {"name": "features", "datatype": "FP32", "shape": [2, 2], "data": [*inside, inside[0], low[1] - 5]}]})
    at_the_edges = httpx.post(f"{onnx_server.url}/v1/models/regression:predict", timeout=30,
                              json={"instances": [low, high]})
    after = scrape(onnx_server.url)

    assert v1.status_code == v2.status_code == at_the_edges.status_code == 200, (v1.text, v2.text)
    assert len(v1.json()["predictions"]) == 4 and all(np.isfinite(v1.json()["predictions"]))
    moved = {feature: total(after, SERIES, model="regression", feature=feature)
             - total(before, SERIES, model="regression", feature=feature) for feature in ("area_m2", "age_years")}
    assert moved == {"area_m2": 3, "age_years": 2}  # the training minimum and maximum themselves are inside
    assert not any(k.startswith(SERIES) and 'model="transformer"' in k for k in after)  # token models: no range


def test_a_manifest_without_a_range_serves_without_the_count_and_a_broken_one_is_refused():
    assert TrainingRange.from_manifest("old", ("a",), {"inputs": [{"name": "features"}]}) is None
    with pytest.raises(ValueError, match="1 minima and 2 maxima for 2 features"):
        TrainingRange.from_manifest("bad", ("a", "b"), {"inputs": [{"training_range": {"min": [0], "max": [1, 2]}}]})
