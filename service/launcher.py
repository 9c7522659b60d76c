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

    python -m service.launcher serve service.service:ModelServe --host H --port P
"""

import shlex
import socket
import sys

import bentoml._internal.utils.circus as bentoml_circus
import bentoml.serving
import circus.sockets
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


def main() -> None:
    bentoml_circus.create_standalone_arbiter = create_standalone_arbiter
    bentoml.serving.create_watcher = create_watcher
    sys.argv[0] = "bentoml"
    sys.exit(cli())


if __name__ == "__main__":
    main()
