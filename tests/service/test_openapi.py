"""The public contract: /docs.json is a valid OpenAPI document listing every route the service answers, and a
fuzzer written by others (schemathesis) driving every operation from it finds no 5xx and no 4xx without a JSON
message."""

import os
import time

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from openapi_spec_validator import validate
from schemathesis.checks import not_a_server_error

EXAMPLES_PER_OPERATION = int(os.environ.get("MODELSERVE_FUZZ_EXAMPLES", "25"))  # `make fuzz`: 500
ROUTES = {
    ("/v1/models/{name}:predict", "post"), ("/v1/models/{name}", "get"),
    ("/v1/models/{name}/versions/{version}:predict", "post"), ("/v1/models/{name}/versions/{version}", "get"),
    ("/v2/models/{name}/infer", "post"), ("/v2/models/{name}/versions/{version}/infer", "post"),
    ("/v2", "get"), ("/v2/health/live", "get"), ("/v2/health/ready", "get"),
    ("/v2/models/{name}", "get"), ("/v2/models/{name}/ready", "get"),
    ("/v2/models/{name}/config", "get"), ("/v2/models/{name}/stats", "get"),
    ("/v2/models/{name}/versions/{version}", "get"), ("/v2/models/{name}/versions/{version}/ready", "get"),
    ("/livez", "get"), ("/readyz", "get"), ("/healthz", "get"), ("/metrics", "get"),
    ("/v2/repository/index", "post"), ("/v2/repository/models/{name}/load", "post"),
    ("/v2/repository/models/{name}/unload", "post"),
}


def test_document_validates_and_lists_every_route_with_its_statuses(onnx_server):
    document = httpx.get(f"{onnx_server.url}/docs.json").json()
    validate(document)  # raises on any violation of the OpenAPI 3.1 specification
    listed = {(path, method) for path, item in document["paths"].items() for method in item}
    assert listed == ROUTES
    predict = document["paths"]["/v1/models/{name}:predict"]["post"]
    assert set(predict["responses"]) == {"200", "400", "401", "404", "413", "422", "429", "503", "504"}
    assert predict["parameters"][0]["name"] == "name" and predict["parameters"][0]["in"] == "path"
    assert set(predict["parameters"][0]["schema"]["examples"]) == {"regression", "mlp", "transformer"}
    assert document["components"]["schemas"]["Error"]["required"] == ["error"]
    for path, item in document["paths"].items():  # every route this service answers, answered as listed
        if "get" in item and "{" not in path:
            assert httpx.get(onnx_server.url + path).status_code == 200, path


@pytest.fixture(scope="module")
def contract(onnx_server):
    return schemathesis.openapi.from_url(f"{onnx_server.url}/docs.json")


@schemathesis.check
def error_says_what_is_wrong(ctx, response, case) -> None:
    """Every 4xx is a JSON object whose `error` is a message a caller can act on."""
    if 400 <= response.status_code < 500:
        try:
            body = response.json()
        except ValueError:
            body = response.text
        assert isinstance(body, dict) and isinstance(body.get("error"), str) and len(body["error"]) > 5, \
            f"{case.method} {response.request.url}: {response.status_code} without a JSON error message: {body!r}"


def test_fuzzed_requests_get_no_5xx_and_every_4xx_says_why(contract, onnx_server):
    """Each operation in turn, a few dozen generated requests each (derandomised: the same cases every run).
    Longer runs: `make fuzz`."""
    operations = [result.ok() for result in contract.get_all_operations()]
    assert len(operations) == len(ROUTES)
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def call(case):
            case.call_and_validate(checks=[not_a_server_error, error_says_what_is_wrong])

        call()
    # The fuzzer may have unloaded the served models (the repository routes take no key on this server): load them
    # again for the tests after this one, and see both workers serve them.
    for model in ("regression", "mlp", "transformer"):
        assert httpx.post(f"{onnx_server.url}/v2/repository/models/{model}/load").status_code == 200
    time.sleep(1.5)  # (the other worker follows at its next tick)
    for _ in range(10):
        reply = httpx.post(f"{onnx_server.url}/v1/models/regression:predict", json={"instances": [[1.0, 2.0]]},
                           headers={"Connection": "close"})
        assert reply.status_code == 200, reply.text


@pytest.mark.parametrize("method, path, status", [
    ("GET", "/v2/models/regression/versions/a%0Ab", 404),  # found by the fuzzer: a newline kept any route from matching
    ("GET", "/nowhere", 404),
    ("DELETE", "/v2", 405),
])
def test_router_errors_are_json_too(onnx_server, method, path, status):
    reply = httpx.request(method, onnx_server.url + path)
    assert reply.status_code == status and "/docs.json" in reply.json()["error"], reply.text
