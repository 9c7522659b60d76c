"""Adaptive batching under real concurrent HTTP load: requests merge, and none is lost or mixed up."""

import asyncio

import aiohttp
import httpx
import numpy as np
import onnxruntime

from tests.support import scrape, total


def expected_prices(trained, rows: np.ndarray) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(trained["regression"]["path"] / "model.onnx"),
                                           providers=["CPUExecutionProvider"])
    return session.run(None, {"features": rows})[0][:, 0]


async def fire(url: str, rows: np.ndarray, concurrency: int) -> list[tuple[int, object]]:
    """Send one request per row, all at once (up to `concurrency` connections)."""
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=300)) as session:
        async def one(row):
            async with session.post(f"{url}/v1/models/regression:predict", json={"instances": [row.tolist()]}) as r:
                return r.status, await r.json()
        return await asyncio.gather(*(one(row) for row in rows))


def test_concurrent_requests_share_engine_calls(onnx_server, trained):
    before = scrape(onnx_server.url)
    rows = np.random.default_rng(1).uniform([40, 0], [250, 60], size=(300, 2)).astype(np.float32)
    replies = asyncio.run(fire(onnx_server.url, rows, concurrency=64))
    assert all(status == 200 for status, _ in replies)
    after = scrape(onnx_server.url)
    calls = total(after, "modelserve_rows_per_engine_call_count", model="regression") \
        - total(before, "modelserve_rows_per_engine_call_count", model="regression")
    served_rows = total(after, "modelserve_rows_per_engine_call_sum", model="regression") \
        - total(before, "modelserve_rows_per_engine_call_sum", model="regression")
    assert served_rows == 300
    assert served_rows / calls > 1.5, f"{served_rows} rows in {calls} engine calls: no batching happened"


def test_burst_of_2000_concurrent_requests_all_answered_correctly(onnx_server, trained):
    rows = np.random.default_rng(2).uniform([40, 0], [250, 60], size=(2000, 2)).astype(np.float32)
    replies = asyncio.run(fire(onnx_server.url, rows, concurrency=2000))
    statuses = [status for status, _ in replies]
    assert statuses.count(200) == 2000, {s: statuses.count(s) for s in set(statuses)}
    got = np.array([body["predictions"][0] for _, body in replies])
    np.testing.assert_allclose(got, expected_prices(trained, rows), rtol=1e-5)  # each its own answer
    assert httpx.get(f"{onnx_server.url}/readyz").status_code == 200


def test_a_request_whose_answer_overflows_is_refused_alone_in_its_batch(onnx_server, trained):
    rows = np.random.default_rng(3).uniform([40, 0], [250, 60], size=(300, 2)).astype(np.float32)
    rows[::10] = 3.4e38  # a regression answers inf for these (float32, so valid input)
    before = scrape(onnx_server.url)
    replies = asyncio.run(fire(onnx_server.url, rows, concurrency=64))
    after = scrape(onnx_server.url)
    overflowing = [replies[i] for i in range(0, 300, 10)]
    assert all(status == 422 and "not finite" in body["error"] for status, body in overflowing), overflowing[:2]
    kept = [i for i in range(300) if i % 10]
    assert all(replies[i][0] == 200 for i in kept)
    np.testing.assert_allclose([replies[i][1]["predictions"][0] for i in kept], expected_prices(trained, rows[kept]),
                               rtol=1e-5)
    rows = total(after, "modelserve_rows_per_engine_call_sum", model="regression") \
        - total(before, "modelserve_rows_per_engine_call_sum", model="regression")
    calls = total(after, "modelserve_rows_per_engine_call_count", model="regression") \
        - total(before, "modelserve_rows_per_engine_call_count", model="regression")
    assert rows / calls > 1.5, "the overflowing rows must have shared engine calls with the others"


def test_batching_off_serves_each_request_alone(trained, tmp_path_factory):
    from tests.servers import start

    server = start(tmp_path_factory, "unbatched", batching="false", max_batch_size=64)
    try:
        rows = np.random.default_rng(3).uniform([40, 0], [250, 60], size=(100, 2)).astype(np.float32)
        replies = asyncio.run(fire(server.url, rows, concurrency=32))
        assert all(status == 200 for status, _ in replies)
        np.testing.assert_allclose([body["predictions"][0] for _, body in replies], expected_prices(trained, rows),
                                   rtol=1e-5)
        big = np.random.default_rng(4).uniform([40, 0], [250, 60], size=(150, 2)).astype(np.float32)
        reply = httpx.post(f"{server.url}/v1/models/regression:predict", json={"instances": big.tolist()}, timeout=30)
        np.testing.assert_allclose(reply.json()["predictions"], expected_prices(trained, big), rtol=1e-5)
        metrics = scrape(server.url)
        assert total(metrics, "modelserve_rows_per_engine_call_count", model="regression") == 100 + 3  # 150: 64+64+22
        assert total(metrics, "modelserve_rows_per_engine_call_sum", model="regression") == 250
    finally:
        server.stop()


def test_sustained_overload_sheds_with_503_and_keeps_serving(trained, tmp_path_factory):
    """Far more work than fits in max_latency_ms, in requests the batcher merges (32 rows) and in
    requests that fill a batch alone and skip its queue (64 rows): what cannot be served in time gets
    a 503 JSON answer, counted by reason; everything else is answered, nothing hangs, and the server
    serves normally afterwards."""
    from tests.servers import start

    server = start(tmp_path_factory, "overload", models="transformer", max_latency_ms=100)
    try:
        before = scrape(server.url)
        instance = [ord(c) + 4 for c in "xqazbk" * 5]

        async def storm(rows: int) -> list[tuple[int, dict]]:
            connector = aiohttp.TCPConnector(limit=400)
            async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as s:
                async def one():
                    async with s.post(f"{server.url}/v1/models/transformer:predict",
                                      json={"instances": [instance] * rows}) as r:
                        return r.status, await r.json()
                return await asyncio.gather(*(one() for _ in range(400)))

        shed = []
        for rows in (32, 64):
            replies = asyncio.run(storm(rows))
            statuses = [status for status, _ in replies]
            assert set(statuses) <= {200, 503}, {s: statuses.count(s) for s in set(statuses)}
            refused = [body for status, body in replies if status == 503]
            assert refused and statuses.count(200), f"{rows} rows: {len(refused)} of {len(replies)} refused"
            assert all("overloaded" in body["error"] for body in refused)
            assert all(len(body["predictions"]) == rows for status, body in replies if status == 200)
            shed += refused
        counted = total(scrape(server.url), "modelserve_rejected_requests_total", model="transformer",
                        reason="overloaded") - total(before, "modelserve_rejected_requests_total",
                                                     model="transformer", reason="overloaded")
        assert counted == len(shed)
        after = httpx.post(f"{server.url}/v1/models/transformer:predict", json={"instances": [instance]}, timeout=30)
        assert after.status_code == 200 and httpx.get(f"{server.url}/readyz").status_code == 200
    finally:
        server.stop()
