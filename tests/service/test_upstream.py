"""service/upstream: the one place that touches BentoML's, uvicorn's and circus's internals. Every other module is
held to that; each change is checked against what BentoML itself does, so these tests fail (and the change is
reviewed, or can go) once a release behaves differently: no OpenTelemetry middleware unless tracing is on, our
traffic metrics in place of BentoML's, a client's malformed body logged as one warning, a request's fields read
without a deprecation warning, binary bodies read, a socket per worker."""

import ast
import inspect
import logging
import subprocess
import sys
import warnings

import bentoml
import circus.arbiter
import circus.sockets
import pydantic
import pytest
from _bentoml_impl.server.app import ServiceAppFactory
from starlette.testclient import TestClient

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


def test_bentoml_still_parses_bodies_with_the_input_model_s_request_parser():
    # adapt_service replaces that parser on the v2 input model; in a fresh interpreter, as importing the service
    # installs its changes process-wide
    check = ("import inspect, sys; from service.app import ModelServe; from _bentoml_impl.server.app import "
             "ServiceAppFactory as F; model = ModelServe.apis['v2_infer'].input_spec; "
             "sys.exit(0 if 'input_spec.from_http_request(' in inspect.getsource(F.api_endpoint) "
             "and 'from_http_request' in vars(model) else 1)")
    result = subprocess.run([sys.executable, "-c", check], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


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


@pytest.fixture(scope="module")
def echo_client():
    # One app for the module's requests: a second app in one process would register BentoML's metrics twice
    with TestClient(Echo.to_asgi()) as client:
        yield client


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


class Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_only_validation_errors_become_warnings():
    logger, kept = logging.getLogger("request-path-test"), Kept()
    logger.addFilter(request_path.CLIENT_ERRORS_AS_WARNINGS)
    logger.addHandler(kept)
    try:
        pydantic.TypeAdapter(int).validate_json(b"[1,")
    except pydantic.ValidationError:
        logger.error("Exception on %s [%s]", "/v1/models/m:predict", "POST", exc_info=True)
    try:
        raise RuntimeError("engine failed")
    except RuntimeError:
        logger.error("Exception on %s [%s]", "/v1/models/m:predict", "POST", exc_info=True)
    client, server = kept.records
    assert client.levelname == "WARNING" and client.exc_info is None
    assert client.getMessage().startswith("refused a request to /v1/models/m:predict [POST] with 400: body: ")
    assert server.levelname == "ERROR" and server.exc_info[0] is RuntimeError  # a real fault keeps its traceback


def post_echo(client: TestClient, warnings_as: str) -> tuple[object, list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:  # process-wide, so it covers the app's thread too
        warnings.simplefilter(warnings_as)
        reply = client.post("/echo", json={"x": 21})
    return reply, caught


def test_requests_read_their_fields_without_a_deprecation_warning_each(echo_client):
    _, caught = post_echo(echo_client, "always")
    # BentoML still reads model_fields on the parsed body, which pydantic warns about: the trim is needed
    assert any(issubclass(w.category, pydantic.warnings.PydanticDeprecatedSince211) for w in caught)
    request_path._keep_input_fields(Echo)
    reply, caught = post_echo(echo_client, "error")  # a warning now would fail the request with a 500
    assert reply.status_code == 200 and reply.json() == 42
    assert not caught


def test_the_service_reads_its_own_requests_fields_without_the_warning():
    # In a fresh interpreter: importing the service installs its trims process-wide.
    check = ("import sys; from service.app import ModelServe; "
             "sys.exit(sum('model_fields' not in vars(api.input_spec) for api in ModelServe.apis.values()))")
    result = subprocess.run([sys.executable, "-c", check], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{result.returncode} API input models without the trim" + result.stderr[-2000:]
