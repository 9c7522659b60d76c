"""With several workers each has its own listening socket (SO_REUSEPORT), so connections spread evenly.

One shared socket let a burst of connections land almost whole on one worker (measured: 60/4, 64/0),
which halved throughput; see service/launcher.py."""

import socket
import time

import psutil


def listening_pids(port: int) -> list[int]:
    return [c.pid for c in psutil.net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port]


def test_each_worker_listens_on_its_own_socket(guarded_server):
    pids = listening_pids(guarded_server.port)
    assert len(pids) == 2 and len(set(pids)) == 2, pids  # two workers, one socket each
    assert guarded_server.process.pid not in pids  # the arbiter accepts nothing itself


def test_a_burst_of_connections_spreads_over_both_workers(guarded_server):
    clients = [socket.create_connection(("127.0.0.1", guarded_server.port)) for _ in range(64)]
    try:
        time.sleep(1.0)  # let the workers accept
        workers = set(listening_pids(guarded_server.port))
        per_worker = {pid: 0 for pid in workers}
        for c in psutil.net_connections(kind="tcp"):
            if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == guarded_server.port and c.pid in workers:
                per_worker[c.pid] += 1
        assert sum(per_worker.values()) == 64, per_worker
        # The kernel hashes each connection to a socket: 64 over 2 falls below 12 with odds under 1e-6.
        assert min(per_worker.values()) >= 12, per_worker
    finally:
        for c in clients:
            c.close()
