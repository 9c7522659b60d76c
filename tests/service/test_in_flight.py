"""The count of requests in flight, as uvicorn keeps it (service/upstream/processes.py): a real uvicorn server sees a
lone request as alone and a crowd as a crowd, and only a request that is alone skips the queue (one with company,
or where the count is unknown, queues, so that requests arriving together form one batch). The same set says how
long a request waited for the event loop before the service read it, which the batcher sheds by."""

import asyncio
import contextlib
import threading
import time

import httpx
import numpy as np
import pytest
import uvicorn

from service.errors import DeadlineUnmet, Overloaded
from service.upstream.processes import REQUESTS, BegunRequests, count_requests_in_flight
from tests.servers import free_port
from tests.support import TimedEngine, batcher_for


def test_a_real_uvicorn_server_counts_a_lone_request_as_alone_and_a_crowd_as_a_crowd():
    count_requests_in_flight()
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

    with running(app, serve) as url:
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


@contextlib.contextmanager
def running(app, serve=None):
    """A real uvicorn server for `app` in a thread, with the service's hold on its request tasks; its URL."""
    count_requests_in_flight()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=asyncio.run, args=((serve or uvicorn.Server.serve)(server),), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_requests_read_together_count_their_wait_for_the_event_loop_from_when_uvicorn_began_them():
    waits = {}

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        waits[scope["path"]] = REQUESTS.waited()
        if scope["path"] != "/warm":
            time.sleep(0.3)  # a long engine call on the event loop: the requests read with it wait their turn
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def hold_then_two(url: str):
        async with httpx.AsyncClient(timeout=10) as client:
            await asyncio.gather(*(client.get(f"{url}/warm") for _ in range(3)))  # three open connections
            hold = asyncio.ensure_future(client.get(f"{url}/hold"))
            await asyncio.sleep(0.1)  # /a and /b arrive while /hold has the loop: it reads them together after
            return await asyncio.gather(hold, client.get(f"{url}/a"), client.get(f"{url}/b"))

    with running(app) as url:
        assert all(r.status_code == 200 for r in asyncio.run(hold_then_two(url)))
    assert waits["/hold"] < 0.1
    # the one run second waited for the other's call, unread by the service all the while
    assert max(waits["/a"], waits["/b"]) > 0.25 and min(waits["/a"], waits["/b"]) < 0.1


def test_a_whole_batch_request_that_waited_past_the_budget_is_shed_not_served_late():
    batcher = batcher_for(TimedEngine(seconds=0), max_latency_ms=100)
    rows = np.ones((batcher.max_rows, 2), dtype=np.float32)  # fills a batch: straight to the engine

    async def request(waited_s: float):
        saved, REQUESTS.tasks = REQUESTS.tasks, BegunRequests()
        REQUESTS.tasks.add(asyncio.current_task())
        REQUESTS.tasks.begun[asyncio.current_task()] -= waited_s  # as if uvicorn began it that long ago
        try:
            return await batcher.infer(rows)
        finally:
            REQUESTS.tasks = saved

    assert asyncio.run(request(0.01)).shape == (batcher.max_rows, 1)
    with pytest.raises(Overloaded):
        asyncio.run(request(0.2))


def test_a_queued_request_that_waited_for_the_event_loop_past_the_budget_is_shed():
    batcher = batcher_for(TimedEngine(seconds=0), max_latency_ms=100)
    row = np.ones((1, 2), dtype=np.float32)  # queues: not alone in its worker

    async def request(waited_s: float):
        REQUESTS.tasks.add(asyncio.current_task())
        REQUESTS.tasks.begun[asyncio.current_task()] -= waited_s  # as if uvicorn began it that long ago
        return await batcher.infer(row)

    async def crowd() -> list:
        saved, REQUESTS.tasks = REQUESTS.tasks, BegunRequests()
        REQUESTS.tasks.add("another")
        try:
            return await asyncio.gather(request(0.2), request(0.0), request(0.0), return_exceptions=True)
        finally:
            REQUESTS.tasks = saved

    first, *others = asyncio.run(crowd())
    assert isinstance(first, Overloaded) and all(o.shape == (1, 1) for o in others)


@pytest.mark.parametrize("tasks, alone", [(("this",), True), (("this", "another"), False), (None, False)])
def test_only_a_request_alone_in_its_worker_goes_straight_to_the_engine(tasks, alone):
    engine = TimedEngine(seconds=0)  # cheap: runs on the event loop, in the task that calls it
    batcher = batcher_for(engine)

    async def request() -> asyncio.Task:
        saved, REQUESTS.tasks = REQUESTS.tasks, None if tasks is None else BegunRequests()
        for task in tasks or ():
            REQUESTS.tasks.add(task)
        try:
            assert float((await batcher.infer(np.full((1, 2), 3, dtype=np.float32)))[0, 0]) == 6.0
        finally:
            REQUESTS.tasks = saved
        return asyncio.current_task()

    async def scenario() -> asyncio.Task:
        return await asyncio.ensure_future(request())

    requesting = asyncio.run(scenario())
    # Alone: in the request's own task; otherwise in the queue's controller task, which a crowd's batch needs.
    assert (engine.tasks == [requesting]) is alone


def test_a_client_deadline_counts_the_wait_for_the_event_loop():
    batcher = batcher_for(TimedEngine(seconds=0))
    row = np.ones((1, 2), dtype=np.float32)

    async def request(waited_s: float, deadline_s: float):
        saved, REQUESTS.tasks = REQUESTS.tasks, BegunRequests()
        REQUESTS.tasks.add(asyncio.current_task())
        REQUESTS.tasks.begun[asyncio.current_task()] -= waited_s  # as if uvicorn began it that long ago
        try:
            return await batcher.infer(row, deadline_s)
        finally:
            REQUESTS.tasks = saved

    assert asyncio.run(request(0.01, 0.1)).shape == (1, 1)
    with pytest.raises(DeadlineUnmet, match="timeout of 100 ms cannot be met: 2.+ ms have passed"):
        asyncio.run(request(0.2, 0.1))
