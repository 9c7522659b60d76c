"""The count of requests in flight, as uvicorn keeps it: a real uvicorn server sees a lone request as alone
and a crowd as a crowd, and only a request that is alone runs without yielding to the event loop first (one
with company, or where the count is unknown, still yields, so that requests arriving together form one batch)."""

import asyncio
import socket
import threading
import time

import httpx
import numpy as np
import pytest
import uvicorn
from prometheus_client import REGISTRY

from service import in_flight
from service.in_flight import REQUESTS
from tests.service.test_dispatch import TimedEngine, batcher_for, start_controller


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_real_uvicorn_server_counts_a_lone_request_as_alone_and_a_crowd_as_a_crowd():
    in_flight.install()
    crowd, seen, crowd_in = 5, [], []
    all_in: asyncio.Event | None = None  # made on the server's event loop

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        seen.append((len(REQUESTS.tasks), REQUESTS.alone()))
        if scope["path"] == "/crowd":
            crowd_in.append(scope["path"])
            if len(crowd_in) == crowd:
                all_in.set()
            await all_in.wait()  # answer only once the whole crowd is in flight
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def serve(server: uvicorn.Server):
        nonlocal all_in
        all_in = asyncio.Event()
        await server.serve()

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=asyncio.run, args=(serve(server),), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{url}/lone").status_code == 200
        assert seen == [(1, True)]

        async def crowd_requests():
            async with httpx.AsyncClient(timeout=10) as client:
                return await asyncio.gather(*(client.get(f"{url}/crowd") for _ in range(crowd)))

        assert all(r.status_code == 200 for r in asyncio.run(crowd_requests()))
        # Each saw itself and those begun before it; the last ones in saw the whole crowd, none was alone
        # except possibly the first (the crowd's requests need not reach the server in one turn).
        counts = [count for count, _ in seen[1:]]
        assert len(counts) == crowd and max(counts) == crowd
        assert [alone for count, alone in seen[1:]] == [count == 1 for count in counts]
        assert httpx.get(f"{url}/lone").status_code == 200  # the crowd's tasks are gone again
        assert seen[-1] == (1, True)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.mark.parametrize("tasks, engine_before_bystander", [({"this"}, True), ({"this", "another"}, False),
                                                             (None, False)])
def test_only_a_request_alone_in_its_worker_skips_the_yield(tasks, engine_before_bystander):
    engine = TimedEngine(seconds=0)  # cheap: runs on the event loop
    batcher = batcher_for(engine)
    order = []
    queue_waits = "modelserve_queue_wait_seconds_count"
    waits_before = REGISTRY.get_sample_value(queue_waits, {"model": "dispatch-test"}) or 0.0

    async def bystander():  # scheduled before the request: it runs first only if the request yields
        order.append("bystander")

    async def scenario():
        await start_controller(batcher, engine)
        saved, REQUESTS.tasks = REQUESTS.tasks, tasks
        try:
            batcher.recording = True
            task = asyncio.ensure_future(bystander())
            output = await batcher.infer(np.full((1, 2), 3, dtype=np.float32))
            order.append("answered")
            await task
        finally:
            REQUESTS.tasks = saved
        return output

    assert float(asyncio.run(scenario())[0, 0]) == 6.0
    assert order == (["answered", "bystander"] if engine_before_bystander else ["bystander", "answered"])
    assert [rows for rows, _ in engine.calls] == [1]
    # Whichever way it went, its wait is counted once (a request alone waited for nobody).
    assert REGISTRY.get_sample_value(queue_waits, {"model": "dispatch-test"}) == waits_before + 1
