"""A new version saved into the store goes live without a restart, in every worker, under load; a tampered one is
refused with its reason and the serving version keeps answering, and one that breaks its clients waits to be promoted
(service/lifecycle/watch.py). Real `modelserve
serve`, two workers, the training job writing the new version."""

import asyncio
import datetime
import re
import shutil
import threading
import time

import aiohttp
import httpx
import numpy as np
import pandas as pd
import psutil

from service.config import ServeConfig
from service.lifecycle.watch import StoreWatcher
from service.runtime.registry import ModelRegistry
from tests.conftest import copy_store, run_modelserve
from tests.servers import API_KEY, Server
from tests.support import scrape, total

ROW = [120.0, 15.0]
MODELS = ("regression", "mlp", "transformer")
INSTANCES = {"regression": ROW, "mlp": [0.5], "transformer": "xqazbk", "wide": [0.5]}


class SteadyLoad:
    """Concurrency 8 over the three models until stopped; every regression answer with its X-Model-Version."""

    def __init__(self, url: str, headers: dict) -> None:
        self.url, self.headers = url, headers
        self.failures: list[tuple[int, str]] = []
        self.regression: list[tuple[float, str, float, str]] = []  # (time, version, answer, worker)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._run(),), daemon=True)

    async def _one(self, session, worker: int) -> None:
        while not self._stop.is_set():
            model = MODELS[worker % 3]
            async with session.post(f"{self.url}/v1/models/{model}:predict",
                                    json={"instances": [INSTANCES[model]]}) as reply:
                body = await reply.json(content_type=None)
                if reply.status != 200:
                    self.failures.append((reply.status, str(body)))
                elif model == "regression":
                    # a generated request id starts with its worker's own prefix (http/request_log.py)
                    self.regression.append((time.monotonic(), reply.headers["X-Model-Version"],
                                            body["predictions"][0], reply.headers["X-Request-Id"].split("-")[0]))

    async def _run(self) -> None:
        async with aiohttp.ClientSession(headers=self.headers) as session:
            await asyncio.gather(*(self._one(session, i) for i in range(8)))

    def __enter__(self) -> "SteadyLoad":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def copy_as(home, name: str, version: str, new_version: str, alter) -> None:
    """A version's files under a new version name, altered by `alter(directory)`, saved as BentoML saves a newer one:
    created now (the order every server reads versions in) and made latest."""
    store = home / "models" / name
    shutil.copytree(store / version, store / new_version)
    model_yaml = store / new_version / "model.yaml"
    created = datetime.datetime.now(datetime.timezone.utc).isoformat()
    model_yaml.write_text(re.sub(r"(?m)^creation_time: .*$", f"creation_time: '{created}'",
                                 model_yaml.read_text().replace(version, new_version)))
    alter(store / new_version)
    (store / "latest").write_text(new_version)


def flip_a_byte(directory) -> None:
    onnx = directory / "model.onnx"
    onnx.write_bytes(onnx.read_bytes()[:-1] + bytes([onnx.read_bytes()[-1] ^ 1]))


def rename_a_feature(directory) -> None:
    """The same model, its second feature named otherwise: clients sending `age_years` would be refused."""
    manifest = directory / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"age_years"', '"age"'))


def test_a_retrained_version_goes_live_in_every_worker_and_a_tampered_one_is_refused(trained, tmp_path):
    home = tmp_path / "home"
    copy_store(home)
    first = (home / "models" / "regression" / "latest").read_text().strip()
    headers = {"Authorization": f"Bearer {API_KEY}"}
    server = Server(tmp_path / "server.log", home=home, workers="2", watch_seconds="1", api_key=API_KEY)
    try:
        server.wait_until("/readyz")
        # A different price list: the same two features, every price 500 higher
        rng = np.random.default_rng(1)
        area, age = rng.uniform(30, 200, 400), rng.uniform(0, 80, 400)
        pd.DataFrame({"area_m2": area, "age_years": age, "price": 500 + 2.5 * area - 0.8 * age}) \
            .to_csv(tmp_path / "prices.csv", index=False)
        with SteadyLoad(server.url, headers) as load:
            time.sleep(1)
            trained_new = run_modelserve("train", "regression", "--data", str(tmp_path / "prices.csv"), "--target",
                                         "price", "--run-dir", str(tmp_path / "run"), home=home, cwd=tmp_path)
            assert trained_new.returncode == 0, trained_new.stderr[-2000:]
            saved_at = time.monotonic()
            second = (home / "models" / "regression" / "latest").read_text().strip()
            assert second != first
            deadline = saved_at + 60
            while time.monotonic() < deadline and not all(v == second for _, v, _, _ in load.regression[-50:]):
                time.sleep(0.5)
            live_at = next(t for t, v, _, _ in load.regression if v == second)
            time.sleep(2)  # then every answer, from both workers, comes from the new version
            copy_as(home, "regression", second, "tampered0000000", flip_a_byte)
            time.sleep(3)  # several watch intervals: the tampered version is looked at and refused
            copy_as(home, "regression", second, "renamed00000000", rename_a_feature)
            time.sleep(3)  # and so is one that would break the clients of the version served
        assert load.failures == []
        before = [answer for t, v, answer, _ in load.regression if v == first]
        after = [(v, answer, worker) for t, v, answer, worker in load.regression if t > live_at + 2]
        assert before and after and {v for v, _, _ in after} == {second}
        # (the load's connections can all land on one worker: ask each worker on connections of its own)
        assert answers_from_both_workers(server.url, "regression", 200, headers, version=second)
        assert min(a for _, a, _ in after) > max(before) + 300  # the new version's prices, about 500 higher
        assert live_at - saved_at < 30, "the new version was not live within a few watch intervals and a warm-up"
        # The tampered version: refused with its reason, in the index and the metric; the new one serves on.
        index = httpx.post(f"{server.url}/v2/repository/index", headers=headers, json={}).json()
        states = {(m["name"], m["version"]): m for m in index}
        assert states[("regression", second)]["state"] == "READY"
        assert states[("regression", first)]["state"] == "UNAVAILABLE"
        refused = states[("regression", "tampered0000000")]
        assert refused["state"] == "UNAVAILABLE" and "sha256" in refused["reason"], refused
        incompatible = states[("regression", "renamed00000000")]
        assert incompatible["state"] == "UNAVAILABLE" and "features ['area_m2', 'age_years'] -> ['area_m2', 'age']" \
            in incompatible["reason"], incompatible
        samples = scrape(server.url)
        assert total(samples, "modelserve_model_load_failures_total", model="regression", reason="checksum") >= 1
        assert total(samples, "modelserve_model_load_failures_total", model="regression", reason="incompatible") >= 1
        for version in (first, second):  # each version's engine time apart, as one replaced the other
            assert total(samples, "modelserve_inference_seconds_count", model="regression", version=version) > 0
        answer = httpx.post(f"{server.url}/v1/models/regression:predict", json={"instances": [ROW]}, headers=headers)
        assert answer.status_code == 200 and answer.headers["X-Model-Version"] == second
        assert httpx.post(f"{server.url}/v2/repository/index", json={}).status_code == 401  # behind the API key
        assert server.log().count("tampered0000000 not served") == 2  # once per worker, not once per look
        assert server.log().count("renamed00000000 not served (incompatible)") == 2
        # Promoted, the incompatible version serves, with its own feature names, in both workers (and in a server
        # started afterwards: tests/training/test_cli.py).
        promoted = run_modelserve("promote", "regression:renamed00000000", home=home, cwd=tmp_path)
        assert promoted.returncode == 0, promoted.stderr[-2000:]
        assert answers_from_both_workers(server.url, "regression", 200, headers, version="renamed00000000",
                                         instance={"area_m2": ROW[0], "age": ROW[1]})
        # Loaded by version through the repository API, the version before it serves again, in both workers.
        loaded = httpx.post(f"{server.url}/v2/repository/models/regression/load", headers=headers,
                            json={"parameters": {"version": second}})
        assert loaded.status_code == 200, loaded.text
        assert answers_from_both_workers(server.url, "regression", 200, headers, version=second)
    finally:
        server.stop()


def test_a_load_asked_for_while_the_worker_loads_the_same_model_waits_for_it(trained):
    """The repository API's load and the worker's own look (following another worker's load) at once: the second
    waits for the first and finds the model served, rather than answering that it is still loading."""
    registry = ModelRegistry(ServeConfig(models=("regression",)))
    watcher = StoreWatcher(registry, store_interval_s=None)

    async def both() -> list:
        first = asyncio.get_running_loop().create_task(watcher.reconcile("regression", {}))
        while not watcher.loading:  # the first is loading the version
            await asyncio.sleep(0.001)
        second = await watcher.reconcile("regression", {})
        return [await first, second]

    assert asyncio.run(both()) == [None, None]
    assert registry.models["regression"].newest.ready and not watcher.loading


def workers_rss(server: Server) -> list[int]:
    """Each worker's resident memory, the least of 6 readings over 3 s: a worker that is loading a version at one
    reading (two versions in memory for a moment) settles, a version kept alive does not."""
    workers = psutil.Process(server.process.pid).children()
    readings = []
    for _ in range(6):
        readings.append([worker.memory_info().rss for worker in workers])
        time.sleep(0.5)
    return [min(reading[i] for reading in readings) for i in range(len(workers))]


def answers_from_both_workers(url: str, model: str, status: int, headers: dict, within_s: float = 10,
                              version: str | None = None, instance=None) -> bool:
    """Whether requests to `model` (of `instance`, else the model's usual one) answer `status` (from `version`, where
    given) from both workers (told apart by their request ids' prefixes)."""
    deadline, seen = time.monotonic() + within_s, set()
    with httpx.Client(headers=headers) as client:
        while time.monotonic() < deadline and len(seen) < 2:
            reply = client.post(f"{url}/v1/models/{model}:predict", json={"instances": [instance or INSTANCES[model]]},
                                headers={"Connection": "close"})  # a new connection each time: either worker
            if reply.status_code == status and version in (None, reply.headers.get("X-Model-Version")):
                seen.add(reply.headers["X-Request-Id"].split("-")[0])
            else:
                seen.clear()  # a worker that has not followed yet: start counting again
    return len(seen) == 2


def test_the_repository_api_loads_and_unloads_in_every_worker_and_unloading_frees_memory(trained, tmp_path):
    home = tmp_path / "home"
    copy_store(home)
    # A wide MLP (2 x 1024 hidden units, a 4 MB ONNX file): a version left in memory would show in the workers' RSS
    (tmp_path / "wide.toml").write_text("[model]\nhidden_sizes = [1024, 1024]\n\n[train]\nepochs = 1\n")
    wide = run_modelserve("train", "mlp", "--name", "wide", "--config", str(tmp_path / "wide.toml"), "--run-dir",
                          str(tmp_path / "run"), home=home, cwd=tmp_path)
    assert wide.returncode == 0, wide.stderr[-2000:]
    headers = {"Authorization": f"Bearer {API_KEY}"}
    server = Server(tmp_path / "server.log", home=home, workers="2", models="regression,wide", api_key=API_KEY)
    repository = f"{server.url}/v2/repository/models"
    try:
        server.wait_until("/readyz")
        assert "model_repository" in httpx.get(f"{server.url}/v2").json()["extensions"]
        assert httpx.post(f"{repository}/wide/unload").status_code == 401  # behind the API key
        assert httpx.post(f"{repository}/wide/unload", headers=headers).json() == {}
        assert answers_from_both_workers(server.url, "wide", 404, headers)
        refused = httpx.post(f"{server.url}/v1/models/wide:predict", json={"instances": [[0.5]]}, headers=headers)
        assert "unloaded" in refused.json()["error"]
        assert httpx.get(f"{server.url}/readyz").status_code == 200  # the rest is still served
        index = {m["name"]: m for m in httpx.post(f"{server.url}/v2/repository/index", headers=headers).json()}
        assert index["wide"]["state"] == "UNAVAILABLE" and "unloaded" in index["wide"]["reason"]
        assert index["regression"]["state"] == "READY"

        assert httpx.post(f"{repository}/wide/load", headers=headers).json() == {}
        assert answers_from_both_workers(server.url, "wide", 200, headers)
        for body, status in [({"parameters": {"version": "nosuchversion"}}, 404),
                             ({"parameters": {"version": 3}}, 400)]:
            reply = httpx.post(f"{repository}/wide/load", json=body, headers=headers)
            assert reply.status_code == status and "version" in reply.json()["error"], reply.text
        assert httpx.post(f"{repository}/nosuchmodel/unload", headers=headers).status_code == 404

        # Unloading frees: twenty cycles leave the workers' memory within 10 % of where it was (a version kept
        # alive each time would add 20 x 4 MB of weights and their arena).
        start = workers_rss(server)
        for _ in range(20):
            assert httpx.post(f"{repository}/wide/unload", headers=headers).status_code == 200
            assert httpx.post(f"{repository}/wide/load", headers=headers).status_code == 200
        assert answers_from_both_workers(server.url, "wide", 200, headers)
        end = workers_rss(server)
        assert all(after < before * 1.10 for before, after in zip(start, end)), (start, end)
    finally:
        server.stop()
