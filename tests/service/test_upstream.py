"""service/upstream: the one place that touches BentoML's, uvicorn's and circus's internals. Every other module is
held to that; each change is checked against what BentoML itself does, so these tests fail (and the change is
reviewed, or can go) once a release behaves differently: no OpenTelemetry middleware unless tracing is on, our
traffic metrics in place of BentoML's, a socket per worker (the timeout: test_timeouts.py)."""

import ast
import inspect
import os
import socket
import subprocess

import bentoml
import circus.arbiter
import circus.sockets
import pytest
from _bentoml_impl.server.app import ServiceAppFactory

from service import upstream
from service.upstream import app_factory as request_path
from service.upstream import processes
from tests.paths import REPO
from tests.servers import free_port

FORBIDDEN = ("_bentoml_impl", "_bentoml_sdk", "bentoml._internal", "uvicorn", "circus")


def imported_modules(path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_only_the_upstream_package_touches_private_internals():
    outside = [p for p in (REPO / "service").rglob("*.py") if "upstream" not in p.relative_to(REPO / "service").parts]
    assert len(outside) > 20
    offenders = {str(p.relative_to(REPO)): sorted(m for m in imported_modules(p) if m.startswith(FORBIDDEN))
                 for p in outside}
    assert not {p: m for p, m in offenders.items() if m}, "private internals imported outside service/upstream"
    inside = imported_modules(REPO / "service" / "upstream" / "app_factory.py")
    assert any(m.startswith(FORBIDDEN) for m in inside)  # (the check reads imports as they are written)


def test_the_installed_bentoml_is_one_the_changes_were_tested_with():
    import bentoml
    assert bentoml.__version__ in upstream.TESTED_BENTOML, (
        f"BentoML {bentoml.__version__}: run this suite against it, then add it to TESTED_BENTOML")


def test_circus_and_bentoml_still_take_what_the_per_worker_sockets_change():
    assert "watchers" in inspect.signature(processes.BENTOML_CREATE_ARBITER).parameters  # (the rest go to circus)
    assert "sockets" in inspect.signature(circus.arbiter.Arbiter).parameters
    assert {"name", "args", "cmd"} <= set(inspect.signature(processes.BENTOML_CREATE_WATCHER).parameters)
    sock = circus.sockets.CircusSocket(name="t", host="127.0.0.1", port=free_port())
    try:
        processes.per_worker(sock)
        rebuilt = circus.sockets.CircusSocket.load_from_config(sock._cfg)  # what circus does in each worker
        assert rebuilt.so_reuseport and (rebuilt.host, rebuilt.port) == (sock.host, sock.port)
        rebuilt.close()
    finally:
        sock.close()


@bentoml.service
class Echo:
    @bentoml.api
    def echo(self, x: int) -> int:
        return x * 2


@pytest.fixture(autouse=True)
def restore_bentoml(monkeypatch):
    # monkeypatch puts BentoML's own attributes back after each test, whatever install() set
    monkeypatch.setattr(ServiceAppFactory, "middlewares", request_path.BENTOML_MIDDLEWARES)


def middleware_names(tracing: bool) -> list[str]:
    request_path.install(tracing, endpoint_of=str)
    return [m.cls.__name__ for m in Echo.to_asgi().user_middleware]


def test_tracing_off_leaves_out_only_the_opentelemetry_middleware():
    with_tracing = middleware_names(tracing=True)
    assert "OpenTelemetryMiddleware" in with_tracing  # BentoML installs it (and keeps it when asked to trace)
    without = middleware_names(tracing=False)
    assert without == [name for name in with_tracing if name != "OpenTelemetryMiddleware"]


def test_bentomls_traffic_metrics_middleware_is_swapped_for_ours_in_its_place():
    upstream = [m.cls.__name__ for m in Echo.to_asgi().user_middleware]  # restore_bentoml put BentoML's back
    assert "RunnerTrafficMetricsMiddleware" in upstream
    for tracing in (True, False):
        ours = middleware_names(tracing)
        expected = [name for name in upstream if tracing or name != "OpenTelemetryMiddleware"]
        assert ours == ["TrafficMetrics" if n == "RunnerTrafficMetricsMiddleware" else n for n in expected]


def test_a_server_takes_a_metrics_directory_of_its_own_and_clears_those_of_dead_servers(tmp_path, monkeypatch):
    from bentoml._internal.configuration.containers import BentoMLContainer

    shared = tmp_path / "prometheus_multiproc_dir"
    monkeypatch.setattr(processes.atexit, "register", lambda *a, **k: None)  # (this test process lives on)
    dead = subprocess.Popen(["true"])
    dead.wait()
    prefix = f"server-{socket.gethostname()}-"
    for name in (f"{prefix}{dead.pid}", f"{prefix}{os.getppid()}", f"{prefix}not-a-pid", "server-otherhost-1"):
        (shared / name).mkdir(parents=True)
    original = BentoMLContainer.prometheus_multiproc_dir.get()
    BentoMLContainer.prometheus_multiproc_dir.set(str(shared))
    try:
        own = processes.own_metrics_directory()
        assert BentoMLContainer.prometheus_multiproc_dir.get() == str(own) == str(shared / f"{prefix}{os.getpid()}")
    finally:
        BentoMLContainer.prometheus_multiproc_dir.set(original)
    assert sorted(p.name for p in shared.iterdir()) == sorted(
        [f"{prefix}{os.getppid()}", f"{prefix}not-a-pid", "server-otherhost-1"])  # the dead server's went
