"""`bentoml serve`, with one listening socket per worker so that the kernel spreads connections evenly.

BentoML binds one TCP socket in its arbiter and hands the same descriptor to every worker, which then
race in accept(). A burst of new connections (a client pool opening) often lands almost whole on one
worker: measured with wrk, 64 connections split 60/4 or 64/0, and that worker queued while the other
idled, halving throughput and tripling p99 from one run to the next. circus, BentoML's process
manager, already has the cure: a socket marked `so_reuseport` is bound afresh in each worker process,
and Linux hashes each new connection to one of those sockets. Circus does that only when the socket
appears in the watcher's `cmd` string, and BentoML builds its socket unmarked and passes it in `args`.
This launcher marks the socket and moves the reference as BentoML hands them to circus, then runs
BentoML's own CLI unchanged.

It also gives each server a metrics directory of its own (see `own_metrics_directory`).

    python -m service.launcher serve service.service:ModelServe --host H --port P
"""

import atexit
import os
import shlex
import shutil
import socket
import sys
from pathlib import Path

import bentoml._internal.utils.circus as bentoml_circus
import bentoml.serving
import circus.sockets
from bentoml._internal.configuration.containers import BentoMLContainer
from bentoml_cli.cli import cli

SOCKET_MARK = "$(circus.sockets."


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


_create_arbiter = bentoml_circus.create_standalone_arbiter


def create_standalone_arbiter(watchers, sockets=None, **kwargs):
    return _create_arbiter(watchers, sockets=[per_worker(s) for s in sockets or []], **kwargs)


_create_watcher = bentoml.serving.create_watcher


def create_watcher(name: str, args: list[str], *, cmd: str = sys.executable, **kwargs):
    """BentoML's watcher, with the whole command line in `cmd`, where circus looks for the socket."""
    watcher = _create_watcher(name, args, cmd=cmd, **kwargs)
    if any(SOCKET_MARK in arg for arg in args):
        watcher.cmd, watcher.args = shlex.join([cmd, *args]), None
    return watcher


def _alive(pid: str) -> bool:
    if not pid.isdigit():
        return True  # not a name this launcher made: leave it
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def own_metrics_directory() -> Path:
    """Point BentoML at a metrics directory for this server alone, removed when it stops.

    The workers' Prometheus values live in files in one directory, `$BENTOML_HOME/prometheus_multiproc_dir`,
    which BentoML empties whenever a server starts. A second server on the same BENTOML_HOME (another set
    of models on another port, or the new server of a blue/green restart) erased the first one's files, and
    the first server's /metrics then reported the second one's traffic as its own. Each server now keeps its
    files in a directory named after its process; those of servers that died without cleaning up are
    removed on the next start.
    """
    shared = Path(BentoMLContainer.prometheus_multiproc_dir.get())
    # Named by host as well: containers that share a volume can run servers with the same process id.
    prefix = f"server-{socket.gethostname()}-"
    for other in shared.glob(prefix + "*"):
        if not _alive(other.name.removeprefix(prefix)):
            shutil.rmtree(other, ignore_errors=True)
    own = shared / f"{prefix}{os.getpid()}"
    BentoMLContainer.prometheus_multiproc_dir.set(str(own))
    atexit.register(shutil.rmtree, own, ignore_errors=True)
    return own


def main() -> None:
    own_metrics_directory()
    bentoml_circus.create_standalone_arbiter = create_standalone_arbiter
    bentoml.serving.create_watcher = create_watcher
    sys.argv[0] = "bentoml"
    sys.exit(cli())


if __name__ == "__main__":
    main()
