"""Overload is refused at once (429/503 with Retry-After), never waited out; every response carries a request id;
JSON logs hold one object per line with the id and never the API key."""

import asyncio
import json
import re

import aiohttp
import httpx
import numpy as np
import pytest

from tests.servers import API_KEY, start

MAX_QUEUE, MAX_LATENCY_MS = 8, 3000
AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture(scope="module")
def server(trained, tmp_path_factory):
    """One worker with a short queue, JSON logs and an API key."""
    server = start(tmp_path_factory, "overload", models="regression,transformer", workers=1, log_format="json",
                   api_key=API_KEY, max_queue=MAX_QUEUE, max_latency_ms=MAX_LATENCY_MS)
    yield server
    server.stop()


async def burst(url: str, connections: int) -> tuple[list[tuple[int, str | None, dict]], list[int]]:
    """`connections` transformer requests on as many connections at once: far over one worker's capacity. (The
    regression's engine call is so cheap that uvicorn's parsing, not the queue, limits it: 1,000 such requests
    at once were all served.)"""
    rng = np.random.default_rng(3)
    texts = ["".join(rng.choice(list("abcdefghijklmnop"), size=24)) for _ in range(connections)]
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:
        async def one(k: int):
            async with session.post(f"{url}/v1/models/transformer:predict", json={"instances": [texts[k]]},
                                    headers={**AUTH, "X-Request-Id": f"burst-{k}"}) as reply:
                headers = {name.lower(): value for name, value in reply.headers.items()}
                return reply.status, reply.headers.get("Retry-After"), headers, await reply.json()
        async def liveness(until: asyncio.Future) -> list[int]:
            """/livez, polled on a connection of its own for as long as the burst lasts."""
            statuses = []
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as own:
                while not until.done():
                    async with own.get(f"{url}/livez") as reply:
                        statuses.append(reply.status)
                    await asyncio.sleep(0.05)
            return statuses

        replies = asyncio.ensure_future(asyncio.gather(*(one(k) for k in range(connections))))
        live = await liveness(replies)
        return await replies, live


def test_a_burst_far_over_capacity_is_answered_or_refused_at_once_and_the_server_stays_ready(server):
    replies, live = asyncio.run(burst(server.url, 1000))
    assert live and set(live) == {200}, live  # /livez answered throughout
    statuses = [status for status, *_ in replies]
    assert set(statuses) <= {200, 429, 503}, {s: statuses.count(s) for s in set(statuses)}
    assert statuses.count(200) >= MAX_QUEUE and statuses.count(429) > 0  # some served, the rest refused
    for k, (status, retry_after, headers, body) in enumerate(replies):
        assert headers["x-request-id"] == f"burst-{k}"  # the client's id, on answers and refusals alike
        if status != 200:
            assert retry_after == "1" and "retry later" in body["error"], body
    assert httpx.get(f"{server.url}/readyz").status_code == 200
    assert httpx.post(f"{server.url}/v1/models/regression:predict", json={"instances": [[100, 10]]},
                      headers=AUTH).status_code == 200  # recovered by itself once the burst is over
    # the requests it accepted stayed within max_latency_ms, by the server's own access lines
    access = [json.loads(line) for line in server.log().splitlines()
              if line.startswith("{") and '"modelserve.access"' in line]
    served = [line["duration_ms"] for line in access if line["status"] == 200]
    assert len(served) >= statuses.count(200) and max(served) <= MAX_LATENCY_MS


def test_request_ids_round_trip_and_json_access_lines_hold_them_but_no_key(server):
    given = httpx.post(f"{server.url}/v1/models/regression:predict", json={"instances": [[100, 10]]},
                       headers={**AUTH, "X-Request-Id": "client-id-42"})
    assert given.status_code == 200 and given.headers["x-request-id"] == "client-id-42"
    refused = httpx.post(f"{server.url}/v1/models/regression:predict", json={"instances": [["x", 1]]},
                         headers=AUTH)  # a 400
    made = refused.headers["x-request-id"]
    assert refused.status_code == 400 and re.fullmatch(r"[0-9a-f]{16}-[0-9]+", made)  # worker prefix, counter
    unauthorised = httpx.post(f"{server.url}/v2/models/regression/infer", json={"inputs": []},
                              headers={"X-Request-Id": "<script> id"})  # not a sane id: a fresh one
    assert unauthorised.status_code == 401 and unauthorised.headers["x-request-id"] not in ("<script> id", made)
    for path in ("/livez", "/metrics", "/v2/models/regression"):
        assert httpx.get(server.url + path).headers.get("x-request-id")

    lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    assert lines, "no JSON log lines"
    access = {line["request_id"]: line for line in lines if line["logger"] == "modelserve.access"}
    line = access["client-id-42"]
    assert {k: line[k] for k in ("level", "status", "model")} == {"level": "INFO", "status": 200,
                                                                  "model": "regression"}
    assert line["version"] and line["duration_ms"] > 0 and line["time"]
    assert access[made]["status"] == 400
    assert API_KEY not in server.log()


def engine_calls(server, model: str) -> float:
    text = httpx.get(f"{server.url}/metrics").text
    prefix = f'modelserve_rows_per_engine_call_count{{model="{model}",'  # (any version)
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))


def test_a_client_deadline_that_cannot_be_met_gets_504_before_the_engine_runs(server):
    import tritonclient.http as tritonclient
    from tritonclient.utils import InferenceServerException

    ids = {"name": "input_ids", "shape": [1, 4], "datatype": "INT64", "data": [70, 71, 72, 73]}
    url = f"{server.url}/v2/models/transformer/infer"
    before = engine_calls(server, "transformer")
    hopeless = httpx.post(url, json={"inputs": [ids], "parameters": {"timeout": 1}}, headers=AUTH)  # 1 µs
    assert hopeless.status_code == 504 and "timeout of 0.001 ms cannot be met" in hopeless.json()["error"]
    assert engine_calls(server, "transformer") == before  # refused before the engine spent anything on it
    ample = httpx.post(url, json={"inputs": [ids], "parameters": {"timeout": 10_000_000}}, headers=AUTH)
    assert ample.status_code == 200 and engine_calls(server, "transformer") == before + 1
    endless = httpx.post(url, content=b'{"inputs": [%s], "parameters": {"timeout": 1%s}}'  # (past any float)
                         % (json.dumps(ids).encode(), b"0" * 400), headers={**AUTH, "content-type": "application/json"})
    assert endless.status_code == 200 and engine_calls(server, "transformer") == before + 2
    bad = httpx.post(url, json={"inputs": [ids], "parameters": {"timeout": "soon"}}, headers=AUTH)
    assert bad.status_code == 400 and "parameters.timeout must be a positive integer" in bad.json()["error"]

    # tritonclient's own `timeout` argument (microseconds) travels the same way
    client = tritonclient.InferenceServerClient(server.url.removeprefix("http://"))
    tensor = tritonclient.InferInput("input_ids", [1, 4], "INT64")
    tensor.set_data_from_numpy(np.array([[70, 71, 72, 73]], dtype=np.int64))
    try:
        client.infer("transformer", [tensor], timeout=1, headers=AUTH)
        raise AssertionError("a 1 µs deadline was met")
    except InferenceServerException as error:
        assert "cannot be met" in str(error)
    assert client.infer("transformer", [tensor], timeout=10_000_000, headers=AUTH).as_numpy("label").shape == (1,)
