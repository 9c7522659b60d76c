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
from tests.support import scrape, total

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


def state_and_parent(pid: int) -> tuple[str, int] | None:
    """(state letter, parent pid) from /proc/PID/stat; None once the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()  # (after the command name, which may hold spaces)
    except OSError:
        return None
    return fields[0], int(fields[1])


def children_of(pid: int) -> set[int]:
    return {int(p) for p in os.listdir("/proc") if p.isdigit() and (state_and_parent(int(p)) or ("", 0))[1] == pid}


def running(pids: set[int]) -> set[int]:
    """Those of `pids` that still run (a zombie, exited but not yet reaped by whoever adopted it, does not)."""
    return {pid for pid in pids if (state_and_parent(pid) or ("Z", 0))[0] != "Z"}


def test_workers_end_when_the_main_process_is_killed_outright(trained, tmp_path):
    """SIGKILL (or the OOM killer) gives the arbiter no chance to stop its workers; each must stop itself, or it
    answers on the port (SO_REUSEPORT) beside any server started there next (service/parent_watch.py)."""
    server = Server(tmp_path / "server.log", models="regression", workers="2")
    try:
        server.wait_until("/readyz")
        workers = children_of(server.process.pid)
        assert len(workers) == 2, workers
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait()
        deadline = time.monotonic() + 30
        while running(workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = running(workers)
        assert not left, f"workers {left} outlived the main process"
        try:
            httpx.get(f"{server.url}/readyz", timeout=5)
            raise AssertionError("something still answers on the port")
        except httpx.ConnectError:
            pass
    finally:
        server.stop()
