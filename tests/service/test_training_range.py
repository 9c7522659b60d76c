"""Instances outside the training range are answered as usual and counted per feature in /metrics."""

import asyncio

import httpx
import numpy as np
import pytest
from prometheus_client import REGISTRY

from service.batching.batcher import ModelBatcher
from service.config import ServeConfig
from service.runtime.drift import TokenTrainingRange, TrainingRange
from service.runtime.registry import EngineCallMetrics
from tests.support import TimedEngine, scrape, total

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


def test_token_sequences_of_lengths_or_ids_unseen_in_training_are_counted(onnx_server, trained):
    lengths = trained["transformer"]["manifest"]["inputs"][0]["training_lengths"]  # the order task: 4 to 32
    shortest, longest = "ab" + "c" * (lengths["min"] - 2), "ab" + "c" * (lengths["max"] - 2)
    too_short = "ab" + "c" * (lengths["min"] - 3)
    before = scrape(onnx_server.url)
    # Text, and ids padded out to the longest instance: padding is not length. Training saw lowercase letters only.
    v1 = httpx.post(f"{onnx_server.url}/v1/models/transformer:predict", timeout=30, json={"instances": [
        shortest, longest, too_short, "ba", [101, 102, 0, 0, 0, 0], [101, 102, 103, 104], "xqaZZbk", "Ab"]})
    v2 = httpx.post(f"{onnx_server.url}/v2/models/transformer/infer", timeout=30, json={"inputs": [
        {"name": "input_ids", "datatype": "INT64", "shape": [2, 4], "data": [101, 102, 0, 0, 101, 102, 103, 104]}]})
    after = scrape(onnx_server.url)

    assert v1.status_code == v2.status_code == 200, (v1.text, v2.text)
    assert len(v1.json()["predictions"]) == 8
    moved = {feature: total(after, SERIES, model="transformer", feature=feature)
             - total(before, SERIES, model="transformer", feature=feature) for feature in ("length", "unseen_token")}
    # length: too_short, "ba", "Ab" and a padded pair in v1, the padded pair in v2; unseen: the two with capitals
    assert moved == {"length": 5, "unseen_token": 2}


def test_a_manifest_without_a_range_serves_without_the_count_and_a_broken_one_is_refused():
    assert TrainingRange.from_manifest("old", ("a",), {"inputs": [{"name": "features"}]}) is None
    with pytest.raises(ValueError, match="1 minima and 2 maxima for 2 features"):
        TrainingRange.from_manifest("bad", ("a", "b"), {"inputs": [{"training_range": {"min": [0], "max": [1, 2]}}]})
    assert TokenTrainingRange.from_manifest("old", {"inputs": [{"name": "input_ids", "pad_id": 0}]}) is None
    with pytest.raises(ValueError, match="outside the vocabulary of 10"):
        TokenTrainingRange.from_manifest("bad", {"inputs": [{"pad_id": 0, "vocab_size": 10, "training_tokens": [3, 10],
                                                             "training_lengths": {"min": 1, "max": 4}}]})


def test_token_lengths_count_tokens_other_than_padding_wherever_the_pad_id_lies():
    def outside() -> float:
        return REGISTRY.get_sample_value(SERIES, {"model": "unit", "feature": "length"}) or 0.0

    lengths, before = TokenTrainingRange("unit", 3, 5, pad_id=7, vocab_size=8), outside()
    lengths.observe(np.array([[1, 2, 7, 7, 7, 7], [1, 2, 3, 7, 7, 7], [1, 2, 3, 4, 5, 7], [1, 2, 3, 4, 5, 6]]))
    assert outside() - before == 2  # 2 tokens (too short) and 6 (too long); 3 and 5 are inside
    for row in ([[1, 2, 7, 7, 7, 7]], [[1, 2, 3, 7, 7, 7]], [[7, 1, 2, 3, 4, 5]], [[1, 2, 3, 4, 5, 6]]):
        lengths.observe(np.array(row))  # one row at a time, as at c=1
    assert outside() - before == 4


def test_instances_holding_an_id_unseen_in_training_are_counted_once_each():
    def unseen() -> float:
        return REGISTRY.get_sample_value(SERIES, {"model": "ids", "feature": "unseen_token"}) or 0.0

    ids, before = TokenTrainingRange("ids", 1, 6, pad_id=0, vocab_size=10, seen=[3, 4, 5]), unseen()
    ids.observe(np.array([[3, 4, 0, 0], [3, 9, 9, 0], [5, 5, 5, 5], [1, 3, 0, 0]]))  # (padding is never unseen)
    assert unseen() - before == 2  # the rows holding 9 and 1, each counted once however many unseen ids
    for row in ([[3, 4, 0, 0]], [[3, 9, 9, 0]], [[2]]):
        ids.observe(np.array(row))  # one row at a time, as at c=1
    assert unseen() - before == 4


def test_warm_up_is_not_counted_and_merged_batches_count_each_instance_once():
    """The batcher counts each engine call's instances (once per merged batch, not per request): every
    instance of a burst is counted exactly once, and warm-up's calls not at all."""
    def outside(feature: str) -> float:
        return REGISTRY.get_sample_value(SERIES, {"model": "merge-test", "feature": feature}) or 0.0

    engine = TimedEngine(seconds=0.002)
    batcher = ModelBatcher("merge-test", engine, np.concatenate, ServeConfig(models=("merge-test",)))
    for _ in range(20):  # warm-up, with rows far outside the range
        batcher.run_now(np.full((1, 2), 9.0, dtype=np.float32))
    assert outside("a") == outside("b") == 0.0
    engine.calls.clear()
    recorder = EngineCallMetrics("merge-test", "1", "onnx",
                                 TrainingRange("merge-test", ("a", "b"), [0.0, 0.0], [1.0, 1.0]))
    batcher.start_recording(recorder, recorder.queue_wait)

    async def burst():
        requests = [[[0.5, 0.5]] * 2 + [[5.0, 0.5]] * (i % 3) + [[0.5, -1.0]] for i in range(12)]
        await asyncio.gather(*(batcher.infer(np.array(r, dtype=np.float32)) for r in requests))

    asyncio.run(burst())
    assert len(engine.calls) < 12  # requests were merged
    assert (outside("a"), outside("b")) == (sum(i % 3 for i in range(12)), 12.0)
