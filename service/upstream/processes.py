"""Changes to BentoML's processes:

- A listening socket per worker: with one socket in the arbiter, a burst of new connections landed 60/4 on two
  workers. circus binds a socket marked `so_reuseport` afresh in each worker (Linux then spreads connections), but
  only when it is in the watcher's `cmd`; BentoML passes it in `args`.
- A metrics directory per server: BentoML empties the shared one when any server starts, erasing another's series.
- uvicorn's set of request tasks (`ServerState.tasks`), begun the moment headers are parsed: the one count that sees
  requests parsed in the same loop turn, by which the batcher knows a request is alone in its worker, and the one
  clock that sees how long a request waited for the event loop before the service read it (it sheds by that).
"""

import asyncio
import atexit
import os
import shlex
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any

import bentoml._internal.utils.circus as bentoml_circus
import bentoml.serving
import circus.sockets
import psutil
import uvicorn.server
from bentoml._internal.configuration.containers import BentoMLContainer

SOCKET_MARK = "$(circus.sockets."
BENTOML_CREATE_ARBITER = bentoml_circus.create_standalone_arbiter
BENTOML_CREATE_WATCHER = bentoml.serving.create_watcher
UVICORN_SERVER_STATE_INIT = uvicorn.server.ServerState.__init__


def per_worker(sock: circus.sockets.CircusSocket) -> circus.sockets.CircusSocket:
    """Mark a TCP listening socket so circus binds it in each worker process (SO_REUSEPORT), not in the arbiter."""
    if sock.is_unix:
        return sock
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.so_reuseport = True
    # What circus re-creates the socket from in each worker (CircusSocket.load_from_config).
    sock._cfg = {"name": sock.name, "host": sock.host, "port": str(sock.port), "family": sock.family.name,
                 "backlog": str(sock.backlog), "so_reuseport": True}
    return sock


def create_standalone_arbiter(watchers, sockets=None, **kwargs):
    return BENTOML_CREATE_ARBITER(watchers, sockets=[per_worker(s) for s in sockets or []], **kwargs)


def create_watcher(name: str, args: list[str], *, cmd: str = sys.executable, **kwargs):
    """BentoML's watcher, with the whole command line in `cmd`, where circus looks for the socket."""
    watcher = BENTOML_CREATE_WATCHER(name, args, cmd=cmd, **kwargs)
    if any(SOCKET_MARK in arg for arg in args):
        watcher.cmd, watcher.args = shlex.join([cmd, *args]), None
    return watcher


def own_metrics_directory() -> Path:
    """A metrics directory for this server alone, removed when it stops (and those of servers that died)."""
    shared = Path(BentoMLContainer.prometheus_multiproc_dir.get())
    prefix = f"server-{socket.gethostname()}-"  # by host too: containers sharing a volume can reuse a pid
    for other in shared.glob(prefix + "*"):
        pid = other.name.removeprefix(prefix)
        if pid.isdigit() and not psutil.pid_exists(int(pid)):  # (a name this launcher did not make: left alone)
            shutil.rmtree(other, ignore_errors=True)
    own = shared / f"{prefix}{os.getpid()}"
    BentoMLContainer.prometheus_multiproc_dir.set(str(own))
    atexit.register(shutil.rmtree, own, ignore_errors=True)
    return own


def install_in_launcher() -> None:
    own_metrics_directory()
    bentoml_circus.create_standalone_arbiter = create_standalone_arbiter
    bentoml.serving.create_watcher = create_watcher


class BegunRequests(set):
    """uvicorn's set of a worker's request tasks, which also notes when each was begun."""

    def __init__(self) -> None:
        super().__init__()
        self.begun: dict[Any, float] = {}  # task -> time.perf_counter() when uvicorn began it

    def add(self, task) -> None:
        self.begun[task] = time.perf_counter()
        super().add(task)

    def discard(self, task) -> None:
        self.begun.pop(task, None)
        super().discard(task)


class InFlight:
    __slots__ = ("tasks",)

    def __init__(self) -> None:
        self.tasks: BegunRequests | None = None  # uvicorn's request tasks in this worker; None until uvicorn starts

    def alone(self) -> bool:
        """True when the request asking is the only one this worker has begun; False when unsure."""
        return self.tasks is not None and len(self.tasks) == 1

    def waited(self) -> float:
        """Seconds since uvicorn began the request asking (its headers parsed); 0.0 outside a request."""
        begun = self.tasks.begun.get(asyncio.current_task()) if self.tasks is not None else None
        return 0.0 if begun is None else time.perf_counter() - begun


REQUESTS = InFlight()


def count_requests_in_flight() -> None:
    """Keep hold of the request-task set of the uvicorn server this worker starts (after the service's import)."""
    def __init__(self) -> None:
        UVICORN_SERVER_STATE_INIT(self)
        self.tasks = REQUESTS.tasks = BegunRequests()

    uvicorn.server.ServerState.__init__ = __init__
