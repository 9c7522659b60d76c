"""A rolling update's SIGTERM: requests already in the server finish with 200, then the server exits 0.

Kubernetes sends SIGTERM to the container's main process alone (here the BentoML arbiter that `modelserve
serve` becomes), after the preStop pause has taken the pod out of the Service (deploy/k8s/base). What the
workers do with requests they have accepted is then the whole story: dropping them would fail clients on
every deploy. The launcher's per-worker listening sockets (service/launcher.py) are what is most at risk.
"""

import os
import signal
import threading
import time

import httpx

from tests.servers import Server
from tests.service.test_metrics import scrape, total

BULK = {"instances": [[5 + (i * 7) % 250 for i in range(32)]] * 1024}  # ~0.1 s of engine time each on a CPU
REQUESTS = 16


def test_sigterm_lets_accepted_requests_finish_then_exits_cleanly(trained, tmp_path):
    server = Server(tmp_path / "server.log", models="transformer", workers="2")
    try:
        server.wait_until("/readyz")
        finished: list[tuple[int | str, float]] = []

        def post() -> None:
            try:
                status = httpx.post(f"{server.url}/v1/models/transformer:predict", json=BULK, timeout=60).status_code
            except httpx.HTTPError as error:
                status = type(error).__name__
            finished.append((status, time.monotonic()))

        clients = [threading.Thread(target=post) for _ in range(REQUESTS)]
        for client in clients:
            client.start()
        # SIGTERM once every request is in the workers' hands (begun or answered), not still in the kernel's: a
        # connection a worker has not begun to read is closed at shutdown, by uvicorn as by any server, which is
        # why the pod leaves the Service (preStop) before SIGTERM. Sent while requests still arrived, 1 in 5 runs
        # saw one such connection closed.
        deadline = time.monotonic() + 30
        while True:
            in_progress = total(scrape(server.url), "bentoml_service_request_in_progress",
                                endpoint="/v1/models/transformer:predict")
            if in_progress + len(finished) >= REQUESTS:
                break
            assert time.monotonic() < deadline, "the bulk requests never reached the workers"
            time.sleep(0.01)
        assert in_progress >= 4, f"only {in_progress} requests left in progress: too few for a drain to be tested"
        terminated_at = time.monotonic()
        os.kill(server.process.pid, signal.SIGTERM)  # the main process only, as the kubelet does
        for client in clients:
            client.join(timeout=60)

        assert server.process.wait(timeout=40) == 0, server.log()[-3000:]
        statuses = [status for status, _ in finished]
        assert statuses == [200] * REQUESTS, statuses
        assert sum(at > terminated_at for _, at in finished) >= 4  # these were in flight when SIGTERM came
        assert "Traceback" not in server.log()
    finally:
        server.stop()
