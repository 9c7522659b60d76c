"""Prometheus metrics: present and moving with two workers, and scraped by a real Prometheus server."""

import asyncio
import os
import shutil
import subprocess
import time

import aiohttp
import httpx
import pytest

from tests.servers import API_KEY, Server, free_port
from tests.support import scrape, total

SERVICE_METRICS = ("modelserve_inference_seconds", "modelserve_rows_per_engine_call", "modelserve_queue_wait_seconds")


async def load(url: str, model: str, instance, count: int, headers: dict) -> list[int]:
    async with aiohttp.ClientSession(headers=headers) as session:
        async def one():
            async with session.post(f"{url}/v1/models/{model}:predict", json={"instances": [instance]}) as r:
                await r.read()
                return r.status
        return await asyncio.gather(*(one() for _ in range(count)))


def test_every_metric_appears_and_moves_with_two_workers(guarded_server, trained):
    headers = {"Authorization": f"Bearer {API_KEY}"}
    before, started = scrape(guarded_server.url), time.time()
    traffic = {"regression": [100.0, 10.0], "mlp": [0.5], "transformer": "xxaxb"}
    for model, instance in traffic.items():
        assert asyncio.run(load(guarded_server.url, model, instance, 120, headers)) == [200] * 120
    asyncio.run(load(guarded_server.url, "mlp", "bad", 3, headers))  # refused: a string is no feature row
    after = scrape(guarded_server.url)

    for model in traffic:
        # every row sent was counted once: both workers' samples are in the sum, none went missing
        rows = (total(after, "modelserve_rows_per_engine_call_sum", model=model)
                - total(before, "modelserve_rows_per_engine_call_sum", model=model))
        assert rows == 120, f"{model}: {rows} rows counted for 120 sent"
        for metric in SERVICE_METRICS:
            moved = total(after, metric + "_count", model=model) - total(before, metric + "_count", model=model)
            assert moved > 0, f"{metric} did not move for {model}"
        info = [k for k in after if k.startswith("modelserve_model_info{") and f'model="{model}"' in k]
        assert len(info) == 1 and 'backend="onnx"' in info[0] and 'device="cpu"' in info[0] and after[info[0]] == 1
    assert total(after, "modelserve_rejected_requests_total", model="mlp", reason="invalid_input") \
        - total(before, "modelserve_rejected_requests_total", model="mlp", reason="invalid_input") == 3
    # BentoML's traffic series, read by the dashboard and alerts (service/upstream/traffic_metrics.py writes them): each
    # request counted once under its path and status, its duration observed once, none left in progress
    for model in traffic:
        endpoint = f"/v1/models/{model}:predict"
        for series in ("bentoml_service_request_total", "bentoml_service_request_duration_seconds_count"):
            for status, sent in (("200", 120), ("400", 3 if model == "mlp" else 0)):
                moved = (total(after, series, endpoint=endpoint, http_response_code=status)
                         - total(before, series, endpoint=endpoint, http_response_code=status))
                assert moved == sent, f"{series} {endpoint} {status}: moved {moved} for {sent} requests"
        assert total(after, "bentoml_service_request_in_progress", endpoint=endpoint) == 0
    assert max(v for k, v in after.items() if k.startswith("bentoml_service_last_request_timestamp_seconds")) \
        >= started


def test_probes_of_paths_not_served_add_no_series(guarded_server):
    # A scanner's paths must not become label values: each would be a series kept by every worker and by
    # Prometheus for good. Its requests are still counted, under one shared endpoint and model.
    headers, probes = {"Authorization": f"Bearer {API_KEY}"}, 20

    async def scan() -> list[int]:
        async with aiohttp.ClientSession(headers=headers) as session:
            async def one(method: str, path: str, body: dict | None = None) -> int:
                async with session.request(method, guarded_server.url + path, json=body) as r:
                    await r.read()
                    return r.status
            v2_body = {"inputs": [{"name": "features", "shape": [1, 2], "datatype": "FP32", "data": [1.0, 2.0]}]}
            return await asyncio.gather(*(request for i in range(probes) for request in (
                one("POST", f"/v1/models/scan-{i}:predict", {"instances": [[1.0, 2.0]]}),
                one("POST", f"/v2/models/regression/versions/scan-{i}/infer", v2_body),
                one("GET", f"/scan-{i}/admin"))))

    before = scrape(guarded_server.url)
    assert asyncio.run(scan()) == [404] * 3 * probes
    after = scrape(guarded_server.url)
    assert not [name for name in after if "scan-" in name], "a probed path became a label value"
    for series in ("bentoml_service_request_total", "bentoml_service_request_duration_seconds_count"):
        moved = (total(after, series, endpoint="(unmatched)", http_response_code="404")
                 - total(before, series, endpoint="(unmatched)", http_response_code="404"))
        assert moved == 3 * probes, f"{series}: {moved} probes counted for {3 * probes}"
    assert total(after, "bentoml_service_request_in_progress", endpoint="(unmatched)") == 0
    refused = {model: total(after, "modelserve_rejected_requests_total", model=model, reason="unknown_model")
               - total(before, "modelserve_rejected_requests_total", model=model, reason="unknown_model")
               for model in ("(unknown)", "regression")}
    assert refused == {"(unknown)": probes, "regression": probes}  # a served model keeps its name


def test_two_servers_on_one_bentoml_home_each_report_their_own_traffic(trained, tmp_path):
    # BentoML empties the home's metrics directory when a server starts; a second server (another model
    # set beside the first, or a blue/green restart) must not take the first one's counts with it.
    home, started = tmp_path / "home", []

    def serve(name: str, requests: int) -> Server:
        server = Server(tmp_path / f"{name}.log", home=home, models="regression", workers="1")
        started.append(server)
        server.wait_until("/readyz")
        assert asyncio.run(load(server.url, "regression", [100.0, 10.0], requests, {})) == [200] * requests
        return server

    def rows(server: Server) -> float:
        return total(scrape(server.url), "modelserve_rows_per_engine_call_sum", model="regression")

    try:
        first = serve("first", 20)
        second = serve("second", 5)
        assert (rows(first), rows(second)) == (20, 5)
        second.stop()
        assert rows(first) == 20
    finally:
        for server in started:
            server.stop()
    assert not list((home / "prometheus_multiproc_dir").glob("server-*")), "a stopped server left its directory"


def test_real_prometheus_scrapes_the_service(onnx_server, tmp_path):
    binary = shutil.which("prometheus")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("prometheus is not installed; `make test` installs Debian's prometheus package")
        pytest.skip("prometheus is not installed (make test installs it)")
    httpx.post(f"{onnx_server.url}/v1/models/mlp:predict", json={"instances": [[0.1]]})
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(f"""
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: modelserve
    static_configs:
      - targets: ["{onnx_server.url.removeprefix('http://')}"]
""")
    prometheus = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
                                   f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
    try:
        query = 'sum(modelserve_rows_per_engine_call_count{model="mlp"})'
        deadline, result = time.monotonic() + 60, []
        while time.monotonic() < deadline and not result:
            time.sleep(1)
            try:
                reply = httpx.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": query}).json()
                result = reply["data"]["result"]
            except (httpx.HTTPError, KeyError, ValueError):
                continue
        assert result, "Prometheus returned nothing for a service metric"
        assert float(result[0]["value"][1]) >= 1
        up = httpx.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": 'up{job="modelserve"}'}).json()
        assert up["data"]["result"][0]["value"][1] == "1"
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=30)
