"""Several versions of a model at once: version routes, a canary split by weight, routing keys, and a shadow
candidate whose answers are compared and never returned (service/lifecycle/versions.py, shadow.py). Real `modelserve
serve`, two workers, versions written by the training job."""

import asyncio
import json
import time
from collections import Counter
from types import SimpleNamespace

import aiohttp
import httpx
import numpy as np
import pandas as pd
import pytest

from service.lifecycle.shadow import disagreement
from service.lifecycle.versions import ModelVersions, VersionPolicy, key_fraction
from tests.conftest import copy_store, run_modelserve
from tests.servers import API_KEY, Server
from tests.support import scrape, total

ROW = [120.0, 15.0]


def served(*versions: str) -> list:
    return [SimpleNamespace(artifacts=SimpleNamespace(version=v), version=v, ready=True,
                            batcher=SimpleNamespace(background=False)) for v in versions]


def test_a_policy_serves_the_newest_versions_not_held_back_or_the_named_ones_and_refuses_a_version_not_stored():
    stored, none_held = ["c", "b", "a"], {}  # newest first
    assert VersionPolicy().wanted(stored, none_held) == ["c"]
    assert VersionPolicy(latest=2).wanted(stored, none_held) == ["c", "b"]
    assert VersionPolicy(versions=("a",), shadow="b").wanted(stored, none_held) == ["b", "a"]
    assert VersionPolicy(weights={"latest": 1, "a": 1}).wanted(stored, none_held) == ["c", "a"]
    held = {"c": "it would break the clients of b"}  # by a breaking change, until promoted
    assert VersionPolicy(latest=2).wanted(stored, held) == ["b", "a"]
    assert VersionPolicy(versions=("c",)).wanted(stored, held) == ["c"]  # named: served as asked
    assert VersionPolicy(weights={"latest": 9, "c": 1}).wanted(stored, held) == ["b", "c"]  # a canary: latest is b
    with pytest.raises(KeyError, match="'z' is not in the store"):
        VersionPolicy(versions=("z",)).wanted(stored, none_held)
    for bad in [{"weights": {"a": -1}}, {"weights": {"a": 0}}, {"shadow_share": 0}, {"latest": 0}, {"other": 1}]:
        with pytest.raises(ValueError):
            VersionPolicy.model_validate(bad)


def test_weights_split_requests_and_a_routing_key_always_lands_on_the_same_version():
    versions = ModelVersions(served("new", "old"), VersionPolicy(latest=2, weights={"latest": 1, "previous": 3}))
    picks = Counter(versions.route(None).version for _ in range(20_000))
    assert abs(picks["new"] / 20_000 - 0.25) < 0.02
    for key in (b"user-1", b"user-2", b"tenant/abc"):
        assert len({versions.route(key).version for _ in range(50)}) == 1
    keyed = Counter(versions.route(f"user-{i}".encode()).version for i in range(4000))
    assert abs(keyed["new"] / 4000 - 0.25) < 0.03  # keys spread by the same weights
    assert key_fraction(b"user-1") == key_fraction(b"user-1") and 0 <= key_fraction(b"") < 1
    assert [v["traffic_share"] for v in versions.describe()] == [0.25, 0.75]
    only_newest = ModelVersions(served("new", "old"), VersionPolicy(latest=2))
    assert {only_newest.route(None).version for _ in range(100)} == {"new"}


def test_the_shadow_gets_its_share_of_requests_and_never_its_own():
    versions = ModelVersions(served("new", "old"), VersionPolicy(latest=2, shadow="latest", shadow_share=0.5,
                                                                  weights={"previous": 1}))
    primary = versions.route(None)
    assert primary.version == "old"
    drawn = sum(versions.shadow_for(primary) is not None for _ in range(4000))
    assert abs(drawn / 4000 - 0.5) < 0.05
    assert versions.shadow_for(versions.find("new")) is None
    # a version that only shadows runs off the event loop; one that also takes traffic runs as any other
    assert versions.find("new").batcher.background and not versions.find("old").batcher.background
    ModelVersions(versions.served, VersionPolicy(latest=2, shadow="latest", weights={"latest": 1, "previous": 1}))
    assert not versions.find("new").batcher.background


def test_disagreement_is_the_absolute_difference_or_the_label_and_probability_difference():
    regression = SimpleNamespace(task="regression")
    assert disagreement(regression, regression, np.array([[1.0], [2.0]]), np.array([[1.5], [2.0]]))["abs_diff"] \
        .tolist() == [0.5, 0.0]
    ours = SimpleNamespace(task="classification", manifest={"class_names": ["a", "b"]})
    theirs = SimpleNamespace(task="classification", manifest={"class_names": ["a", "b"]})
    measures = disagreement(ours, theirs, np.array([[0.9, 0.1], [0.4, 0.6]]), np.array([[0.8, 0.2], [0.7, 0.3]]))
    assert measures["label_mismatch"].tolist() == [0.0, 1.0]
    assert np.allclose(measures["probability_diff"], [0.1, 0.3])
    renamed = SimpleNamespace(task="classification", manifest={"class_names": ["b", "a"]})
    measures = disagreement(ours, renamed, np.array([[0.9, 0.1]]), np.array([[0.1, 0.9]]))
    assert measures["label_mismatch"].tolist() == [0.0]  # the same label, though in another place
    assert "probability_diff" not in measures


async def _predict_many(url: str, count: int, headers: dict, keys: list[str] | None = None) -> list[tuple]:
    """(status, X-Model-Version, answer, routing key) for `count` requests at concurrency 8."""
    results, queue = [], list(range(count))

    async def one(session):
        while queue:
            i = queue.pop()
            key = keys[i % len(keys)] if keys else None
            async with session.post(f"{url}/v1/models/regression:predict", json={"instances": [ROW]},
                                    headers={"X-Routing-Key": key} if key else {}) as reply:
                body = await reply.json(content_type=None)
                results.append((reply.status, reply.headers.get("X-Model-Version"),
                                body.get("predictions", [None])[0], key))

    async with aiohttp.ClientSession(headers=headers) as session:
        await asyncio.gather(*(one(session) for _ in range(8)))
    return results


def both_workers_show(url: str, path: str, check, headers: dict, within_s: float = 20) -> bool:
    """Whether GET `path` satisfies `check(body)` in both workers (told apart by their request ids' prefixes)."""
    deadline, seen = time.monotonic() + within_s, set()
    while time.monotonic() < deadline and len(seen) < 2:
        reply = httpx.get(url + path, headers={**headers, "Connection": "close"})
        if reply.status_code == 200 and check(reply.json()):
            seen.add(reply.headers["X-Request-Id"].split("-")[0])
        else:
            seen.clear()
    return len(seen) == 2


def train_version(home, tmp_path, name: str, frame: pd.DataFrame) -> None:
    frame.to_csv(tmp_path / f"{name}.csv", index=False)
    result = run_modelserve("train", "regression", "--data", str(tmp_path / f"{name}.csv"), "--target", "price",
                            "--run-dir", str(tmp_path / f"run-{name}"), home=home, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]


def test_versions_canary_routing_keys_and_shadow_in_a_running_server(trained, tmp_path):
    home = tmp_path / "home"
    copy_store(home)
    store = home / "models" / "regression"
    first = (store / "latest").read_text().strip()
    rng = np.random.default_rng(2)
    area, age, rooms = rng.uniform(30, 200, 300), rng.uniform(0, 80, 300), rng.integers(1, 6, 300)
    # a retrained version: the same two features, every price 500 higher
    train_version(home, tmp_path, "higher", pd.DataFrame({"area_m2": area, "age_years": age,
                                                          "price": 500 + 2.5 * area - 0.8 * age}))
    second = (store / "latest").read_text().strip()
    # a candidate that cannot answer today's requests: it reads three features
    train_version(home, tmp_path, "rooms", pd.DataFrame({"area_m2": area, "age_years": age, "rooms": rooms,
                                                         "price": 2.5 * area + 10 * rooms}))
    third = (store / "latest").read_text().strip()
    headers = {"Authorization": f"Bearer {API_KEY}"}
    policy = {"regression": {"versions": [first, second], "weights": {first: 90, second: 10}}}
    server = Server(tmp_path / "server.log", home=home, workers="2", models="regression",
                    version_policy=json.dumps(policy), api_key=API_KEY)
    try:
        server.wait_until("/readyz")
        # 90/10 over 5,000 requests, both workers answering
        results = asyncio.run(_predict_many(server.url, 5000, headers))
        assert {status for status, *_ in results} == {200}
        share = sum(version == second for _, version, _, _ in results) / len(results)
        assert abs(share - 0.10) <= 0.02, share
        answers = {version: answer for _, version, answer, _ in results}
        assert answers[second] > answers[first] + 300  # the retrained version's prices
        samples = scrape(server.url)
        assert total(samples, "modelserve_predictions_total", model="regression", version=second) == \
            sum(version == second for _, version, _, _ in results)
        # the same routing key, the same version, whichever worker answers
        keyed = asyncio.run(_predict_many(server.url, 600, headers, keys=[f"user-{i}" for i in range(200)]))
        by_key = {}
        for _, version, _, key in keyed:
            by_key.setdefault(key, set()).add(version)
        assert all(len(versions) == 1 for versions in by_key.values())
        assert {next(iter(v)) for v in by_key.values()} == {first, second}

        # a version by name, on either protocol; the metadata lists each version with its share
        v1 = httpx.post(f"{server.url}/v1/models/regression/versions/{second}:predict", json={"instances": [ROW]},
                        headers=headers)
        assert v1.headers["X-Model-Version"] == second and v1.json()["predictions"] == [answers[second]]
        v2 = httpx.post(f"{server.url}/v2/models/regression/versions/{first}/infer", headers=headers, json={
            "inputs": [{"name": "features", "shape": [1, 2], "datatype": "FP32", "data": ROW}]})
        assert v2.json()["model_version"] == first and v2.headers["X-Model-Version"] == first
        missing = httpx.post(f"{server.url}/v1/models/regression/versions/{third}:predict",
                             json={"instances": [ROW]}, headers=headers)
        assert missing.status_code == 404 and third in missing.text  # stored, but not served by the policy
        assert httpx.get(f"{server.url}/v2/models/regression").json()["versions"] == [second, first]
        shares = {v["version"]: v["traffic_share"] for v in httpx.get(f"{server.url}/v1/models/regression").json()[
            "versions"]}
        assert shares == {first: 0.9, second: 0.1}

        # at run time: every request to the first version, and a copy of each to the second as a shadow
        load = f"{server.url}/v2/repository/models/regression/load"
        shadowing = {"versions": [first, second], "weights": {first: 1}, "shadow": second, "shadow_share": 1.0}
        assert httpx.post(load, json={"parameters": {"policy": shadowing}}).status_code == 401
        assert httpx.post(load, json={"parameters": {"policy": shadowing}}, headers=headers).json() == {}
        assert both_workers_show(server.url, "/v1/models/regression", lambda body: body["versions"][0][
            "shadow_share"] == 1.0, headers)
        results = asyncio.run(_predict_many(server.url, 200, headers))
        assert {(status, version, answer) for status, version, answer, _ in results} == {(200, first, answers[first])}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and total(scrape(server.url), "modelserve_shadow_requests_total",
                                                    candidate=second) < 200:
            time.sleep(0.2)
        samples = scrape(server.url)
        assert total(samples, "modelserve_shadow_requests_total", candidate=second, outcome="compared") == 200
        count = total(samples, "modelserve_shadow_disagreement_count", candidate=second, measure="abs_diff")
        mean = total(samples, "modelserve_shadow_disagreement_sum", candidate=second, measure="abs_diff") / count
        assert count == 200 and 300 < mean < 700  # one instance a request; about 500 apart
        assert total(samples, "modelserve_shadow_disagreement_bucket", candidate=second, measure="abs_diff",
                     le="100.0") == 0

        # a shadow that fails every copy (it reads three features) changes no answer and adds no error
        failing = {"versions": [first, third], "weights": {first: 1}, "shadow": third, "shadow_share": 1.0}
        assert httpx.post(load, json={"parameters": {"policy": json.dumps(failing)}}, headers=headers).json() == {}
        assert both_workers_show(server.url, "/v2/models/regression", lambda body: third in body["versions"], headers)
        results = asyncio.run(_predict_many(server.url, 100, headers))
        assert {(status, version, answer) for status, version, answer, _ in results} == {(200, first, answers[first])}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and total(scrape(server.url), "modelserve_shadow_requests_total",
                                                    candidate=third, outcome="failed") < 100:
            time.sleep(0.2)
        samples = scrape(server.url)
        assert total(samples, "modelserve_shadow_requests_total", candidate=third, outcome="failed") == 100
        assert total(samples, "modelserve_shadow_requests_total", candidate=third, outcome="compared") == 0
        bad = httpx.post(load, json={"parameters": {"policy": {"weights": {"nosuchversion": 1}}}}, headers=headers)
        assert bad.status_code == 404 and "nosuchversion" in bad.json()["error"]
        assert httpx.post(load, json={"parameters": {"policy": {"latest": -1}}}, headers=headers).status_code == 400
    finally:
        server.stop()
