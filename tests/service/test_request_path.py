"""The trimmed request path: no OpenTelemetry middleware unless tracing is on, API methods built once per
service instance, response headers added without binding a signature, a client's malformed body logged
as one warning, and a request's fields read without a deprecation warning. Each trim is checked against
what BentoML itself does, so these tests fail (and the trim can go) once BentoML changes it."""

import inspect
import logging
import subprocess
import sys
import warnings

import bentoml
import pydantic
import pytest
from _bentoml_impl.server.app import ServiceAppFactory
from _bentoml_sdk.method import APIMethod
from starlette.testclient import TestClient

from service import request_path
from tests.paths import REPO


@bentoml.service
class Echo:
    @bentoml.api
    def echo(self, x: int) -> int:
        return x * 2


@pytest.fixture(autouse=True)
def restore_bentoml(monkeypatch):
    # monkeypatch puts BentoML's own attributes back after each test, whatever install() set
    monkeypatch.setattr(ServiceAppFactory, "middlewares", request_path.BENTOML_MIDDLEWARES)
    monkeypatch.setattr(APIMethod, "__get__", request_path.BENTOML_API_METHOD_GET)
    monkeypatch.setattr(ServiceAppFactory, "_add_response_headers", request_path.BENTOML_ADD_RESPONSE_HEADERS)


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


def test_api_methods_are_built_once_per_instance_and_still_work():
    service = Echo()
    method = Echo.apis["echo"]
    upstream = request_path.BENTOML_API_METHOD_GET  # builds a new wrapper on every lookup
    assert upstream(method, service, type(service)) is not upstream(method, service, type(service))
    request_path.install(tracing=False, endpoint_of=str)
    assert service.echo is service.echo
    assert service.echo(21) == 42
    other = Echo()
    assert other.echo is not service.echo  # bound to its own instance
    assert other.echo(1) == 2


def test_responses_keep_bentomls_headers_without_binding_a_signature_per_call(monkeypatch, echo_client):
    assert hasattr(request_path.BENTOML_ADD_RESPONSE_HEADERS, "__wrapped__")  # BentoML's is still @inject-ed
    bindings = 0
    bind_partial = inspect.Signature.bind_partial

    def counted(self, *args, **kwargs):
        nonlocal bindings
        bindings += 1
        return bind_partial(self, *args, **kwargs)

    request_path.install(tracing=False, endpoint_of=str)
    echo_client.post("/echo", json={"x": 1})  # the first call builds what is built once
    monkeypatch.setattr(inspect.Signature, "bind_partial", counted)
    reply = echo_client.post("/echo", json={"x": 21})
    assert reply.status_code == 200 and reply.json() == 42
    assert reply.headers["server"] == "BentoML Service/Echo"
    assert bindings == 0, f"{bindings} signature bindings for one request"


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
    request_path.keep_input_fields(Echo)
    reply, caught = post_echo(echo_client, "error")  # a warning now would fail the request with a 500
    assert reply.status_code == 200 and reply.json() == 42
    assert not caught


def test_the_service_reads_its_own_requests_fields_without_the_warning():
    # In a fresh interpreter: importing the service installs its trims process-wide.
    check = ("import sys; from service.service import ModelServe; "
             "sys.exit(sum('model_fields' not in vars(api.input_spec) for api in ModelServe.apis.values()))")
    result = subprocess.run([sys.executable, "-c", check], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{result.returncode} API input models without the trim" + result.stderr[-2000:]
