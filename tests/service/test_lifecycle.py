"""A new version saved into the store goes live without a restart, in every worker, under load; a tampered one is
refused with its reason and the serving version keeps answering (service/lifecycle/watch.py). Real `modelserve
serve`, two workers, the training job writing the new version."""

import asyncio
import shutil
import threading
import time

import aiohttp
import httpx
import numpy as np
import pandas as pd

from tests.conftest import SESSION_HOME, run_modelserve
from tests.servers import API_KEY, Server
from tests.support import scrape, total

ROW = [120.0, 15.0]
MODELS = ("regression", "mlp", "transformer")
INSTANCES = {"regression": ROW, "mlp": [0.5], "transformer": "xqazbk"}


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


def copy_store(home) -> None:
    for name in MODELS:
        source = SESSION_HOME / "models" / name
        version = (source / "latest").read_text().strip()
        shutil.copytree(source / version, home / "models" / name / version)
        (home / "models" / name / "latest").write_text(version)


def tampered_copy(home, name: str, version: str, new_version: str) -> None:
    """The serving version's files under a new version name, one byte of the ONNX file altered, made latest."""
    store = home / "models" / name
    shutil.copytree(store / version, store / new_version)
    model_yaml = store / new_version / "model.yaml"
    model_yaml.write_text(model_yaml.read_text().replace(version, new_version))
    onnx = store / new_version / "model.onnx"
    onnx.write_bytes(onnx.read_bytes()[:-1] + bytes([onnx.read_bytes()[-1] ^ 1]))
    (store / "latest").write_text(new_version)


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
            time.sleep(2)
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
            time.sleep(3)  # then every answer, from both workers, comes from the new version
            tampered_copy(home, "regression", second, "tampered0000000")
            time.sleep(4)  # several watch intervals: the tampered version is looked at and refused
        assert load.failures == []
        before = [answer for t, v, answer, _ in load.regression if v == first]
        after = [(v, answer, worker) for t, v, answer, worker in load.regression if t > live_at + 3]
        assert before and after and {v for v, _, _ in after} == {second}
        assert len({worker for _, _, worker in after}) == 2, "both workers answered, each with the new version"
        assert min(a for _, a, _ in after) > max(before) + 300  # the new version's prices, about 500 higher
        assert live_at - saved_at < 30, "the new version was not live within a few watch intervals and a warm-up"
        # The tampered version: refused with its reason, in the index and the metric; the new one serves on.
        index = httpx.post(f"{server.url}/v2/repository/index", headers=headers, json={}).json()
        states = {(m["name"], m["version"]): m for m in index}
        assert states[("regression", second)]["state"] == "READY"
        assert states[("regression", first)]["state"] == "UNAVAILABLE"
        refused = states[("regression", "tampered0000000")]
        assert refused["state"] == "UNAVAILABLE" and "sha256" in refused["reason"], refused
        samples = scrape(server.url)
        assert total(samples, "modelserve_model_load_failures_total", model="regression", reason="checksum") >= 1
        answer = httpx.post(f"{server.url}/v1/models/regression:predict", json={"instances": [ROW]}, headers=headers)
        assert answer.status_code == 200 and answer.headers["X-Model-Version"] == second
        assert httpx.post(f"{server.url}/v2/repository/index", json={}).status_code == 401  # behind the API key
        assert server.log().count("tampered0000000 not served") == 2  # once per worker, not once per look
    finally:
        server.stop()
