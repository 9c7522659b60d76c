"""Each class of bad input gets a 4xx whose JSON names the problem; the server keeps serving everyone else."""

import json
import socket
import time

import httpx
import pytest

from tests.servers import API_KEY
from tests.support import assert_still_serving, scrape, send, total

FEATURE_CASES = {
    # name: (path, body, status, message fragment)
    "malformed JSON": ("/v1/models/regression:predict", b'{"instances": [[1, 2]', 400, "Invalid JSON"),
    "missing instances": ("/v1/models/regression:predict", {"rows": [[1, 2]]}, 400, "instances"),
    "instances not a list": ("/v1/models/regression:predict", {"instances": {"a": 1}}, 400, "instances"),
    "wrong feature count": ("/v1/models/regression:predict", {"instances": [[1, 2], [1, 2, 3]]}, 400,
                            "instance 1: expected 2 numbers (area_m2, age_years), got 3 values"),
    "unknown feature name": ("/v1/models/regression:predict", {"instances": [{"area_m2": 1, "rooms": 2}]}, 400,
                             "instance 0: unknown feature 'rooms'; expected area_m2, age_years"),
    "missing feature name": ("/v1/models/regression:predict", {"instances": [{"area_m2": 1}]}, 400,
                             "instance 0: missing feature 'age_years'"),
    "string where a number belongs": ("/v1/models/regression:predict", {"instances": [[1, 2], [3, "four"]]}, 400,
                                      "instance 1, feature 'age_years': expected a number, got string 'four'"),
    "list where a number belongs": ("/v1/models/regression:predict", {"instances": [[[1], 2]]}, 400,
                                    "instance 0, feature 'area_m2': expected a number, got list"),
    "infinite number": ("/v1/models/regression:predict", b'{"instances": [[1, 2], [1e999, 2]]}', 400,
                        "instance 1, feature 'area_m2': inf is not a finite number"),
    "negative infinity": ("/v1/models/regression:predict", b'{"instances": [[1, -Infinity]]}', 400,
                          "instance 0, feature 'age_years': -inf is not a finite number"),
    "unknown model": ("/v1/models/gpt:predict", {"instances": [[1]]}, 404,
                      "model 'gpt' is not served here; served models: mlp, regression, transformer"),
    "no instances": ("/v1/models/regression:predict", {"instances": []}, 400, "no instances"),
    "too many instances": ("/v1/models/mlp:predict", {"instances": [[0.0]] * 1025}, 400,
                           "1025 instances in one request; the limit is 1024"),
    "token id outside the vocabulary": ("/v1/models/transformer:predict", {"instances": [[5, 6], [7, 260]]}, 400,
                                        "instance 1, token 1: id 260 is outside the vocabulary [0, 260)"),
    "sequence longer than max_len": ("/v1/models/transformer:predict", {"instances": ["a" * 33]}, 400,
                                     "instance 0: text is 33 byte tokens, longer than max_len 32"),
    "empty sequence": ("/v1/models/transformer:predict", {"instances": ["ab", []]}, 400,
                       "instance 1: empty sequence"),
    "empty text": ("/v1/models/transformer:predict", {"instances": [""]}, 400, "instance 0: empty text"),
    "number where a sequence belongs": ("/v1/models/transformer:predict", {"instances": [5]}, 400,
                                        "instance 0: expected a string or a list of token ids, got int"),
    "OIP shape does not match data": ("/v2/models/regression/infer", {"inputs": [
        {"name": "features", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3]}]}, 400,
        "input 'features': shape [2, 2] holds 4 values but data has 3"),
    "OIP wrong feature width": ("/v2/models/regression/infer", {"inputs": [
        {"name": "features", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}, 400,
        "input 'features' must have shape [N, 2]"),
    "OIP unsupported datatype": ("/v2/models/regression/infer", {"inputs": [
        {"name": "features", "shape": [1, 2], "datatype": "BYTES", "data": ["1", "2"]}]}, 400,
        "datatype BYTES is not supported here; use FP32 or FP64 or INT64 or INT32"),
    "OIP unknown datatype": ("/v2/models/regression/infer", {"inputs": [
        {"name": "features", "shape": [1, 2], "datatype": "FLOAT", "data": [1, 2]}]}, 400,
        "unknown datatype 'FLOAT'"),
    "OIP datatype not a string": ("/v2/models/regression/infer", {"inputs": [
        {"name": "features", "shape": [1, 2], "datatype": ["FP32"], "data": [1, 2]}]}, 400,
        "unknown datatype ['FP32']"),
    "OIP unknown input name": ("/v2/models/transformer/infer", {"inputs": [
        {"name": "tokens", "shape": [1, 2], "datatype": "INT64", "data": [5, 6]}]}, 400,
        "unknown input 'tokens' for model 'transformer'"),
    "OIP token id outside the vocabulary": ("/v2/models/transformer/infer", {"inputs": [
        {"name": "input_ids", "shape": [2, 2], "datatype": "INT64", "data": [[5, 6], [7, 260]]}]}, 400,
        "instance 1, token 1: id 260 is outside the vocabulary [0, 260)"),
    "OIP negative token id": ("/v2/models/transformer/infer", {"inputs": [
        {"name": "input_ids", "shape": [1, 3], "datatype": "INT64", "data": [5, -1, 6]}]}, 400,
        "instance 0, token 1: id -1 is outside the vocabulary [0, 260)"),
    "OIP sequence of only padding": ("/v2/models/transformer/infer", {"inputs": [
        {"name": "input_ids", "shape": [2, 2], "datatype": "INT64", "data": [5, 6, 0, 0]}]}, 400,
        "instance 1: empty sequence (only padding)"),
    "OIP strings in numeric data": ("/v2/models/regression/infer", {"inputs": [
        {"name": "features", "shape": [1, 2], "datatype": "FP32", "data": ["1", "2"]}]}, 400,
        "input 'features': data must hold only FP32 numbers"),
    "OIP integer outside its datatype's range": ("/v2/models/regression/infer", {"inputs": [
        {"name": "features", "shape": [1, 2], "datatype": "INT32", "data": [2**40, 2]}]}, 400,
        "input 'features': 1099511627776 (value 0) is outside INT32's range [-2147483648, 2147483647]"),
    "OIP FP64 value past float32's range": ("/v2/models/regression/infer", {"inputs": [
        {"name": "features", "shape": [2, 2], "datatype": "FP64", "data": [1, 2, 3, 1e308]}]}, 400,
        "instance 1, feature 'age_years': 1e+308 is beyond float32's range"),
    "integer past any float": ("/v1/models/regression:predict", b'{"instances": [[1, 2], [1, 1' + b"0" * 400 + b"]]}",
                               400, "instance 1, feature 'age_years': an integer of 1329 bits is beyond float32's"),
    "OIP integer past any float": ("/v2/models/regression/infer", b'{"inputs": [{"name": "features", "shape": [1, 2], '
                                   b'"datatype": "FP32", "data": [1, 1' + b"0" * 400 + b"]}]}", 400,
                                   "input 'features': value 1 is an integer of 1329 bits, beyond FP32's range"),
    "OIP token id past 64 bits": ("/v2/models/transformer/infer", {"inputs": [
        {"name": "input_ids", "shape": [1, 2], "datatype": "INT64", "data": [5, 2**64]}]}, 400,
        "input 'input_ids': 18446744073709551616 (value 1) is outside INT64's range"),
    "OIP float token id": ("/v2/models/transformer/infer", {"inputs": [
        {"name": "input_ids", "shape": [1, 2], "datatype": "INT64", "data": [5, 6.5]}]}, 400,
        "input 'input_ids': INT64 data holds 6.5 (value 1), not an integer"),
    "output that overflows the model": ("/v1/models/regression:predict", {"instances": [[100, 10], [3.4e38, 3.4e38]]},
                                        422, "instance 1: the model's output is"),
    "OIP output that overflows the model": ("/v2/models/regression/infer", {"inputs": [
        {"name": "features", "shape": [2, 2], "datatype": "FP32", "data": [100, 10, 3.4e38, 3.4e38]}]}, 422,
        "instance 1: the model's output is"),
    "OIP missing field": ("/v2/models/regression/infer", {"inputs": [{"name": "features", "data": [1, 2]}]}, 400,
                          "inputs[0] is missing shape, datatype"),
    "OIP unknown requested output": ("/v2/models/regression/infer", {
        "inputs": [{"name": "features", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}],
        "outputs": [{"name": "logits"}]}, 400, "unknown output 'logits' requested"),
}


@pytest.mark.parametrize("case", sorted(FEATURE_CASES))
def test_bad_input_is_a_4xx_that_names_the_problem(onnx_server, case):
    path, body, status, fragment = FEATURE_CASES[case]
    reply = send(onnx_server, path, body)
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"].startswith("application/json")
    assert fragment in json.dumps(reply.json()) or fragment in reply.json()["error"], reply.text
    assert_still_serving(onnx_server)


def test_a_malformed_body_is_one_warning_line_in_the_log_not_an_error_traceback(onnx_server):
    logged_before = len(onnx_server.log())
    assert send(onnx_server, "/v1/models/regression:predict", b'{"instances": [[1, 2]').status_code == 400
    assert send(onnx_server, "/v1/models/regression:predict", {"rows": [[1, 2]]}).status_code == 400
    assert_still_serving(onnx_server)
    time.sleep(0.5)  # the worker's log lines reach the file through the server process
    new_lines = onnx_server.log()[logged_before:]
    refused = [line for line in new_lines.splitlines() if "refused a request to /v1/models/regression:predict" in line]
    assert len(refused) == 2 and all("[WARNING]" in line for line in refused), new_lines
    assert "Invalid JSON" in refused[0] and "instances: Field required" in refused[1]
    assert "Traceback" not in new_lines and "[ERROR]" not in new_lines, new_lines


def test_a_client_that_leaves_mid_body_is_not_served_logged_or_counted_as_bad_json(onnx_server):
    """A disconnect is not a malformed body, nor a whole one: what arrived must not be parsed as the request, and
    the request is over at once."""
    def counts() -> tuple[float, float]:
        samples = scrape(onnx_server.url)
        return (total(samples, "modelserve_rejected_requests_total", model="regression", reason="invalid_body"),
                total(samples, "modelserve_rows_per_engine_call_count", model="regression"))

    def in_progress() -> float:
        return total(scrape(onnx_server.url), "bentoml_service_request_in_progress",
                     endpoint="/v1/models/regression:predict")

    before = counts()
    logged_before = len(onnx_server.log())
    host, port = onnx_server.url.removeprefix("http://").split(":")
    for part in (b'{"inst', b'{"instances": [[1, 2]]}'):  # the second parses: it must not run either
        with socket.create_connection((host, int(port))) as client:
            client.sendall(b"POST /v1/models/regression:predict HTTP/1.1\r\nHost: x\r\n"
                           b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n" + part)
            time.sleep(0.2)  # (the server has begun the request, and waits for the rest)
    time.sleep(0.5)  # the worker's log lines reach the file through the server process
    assert counts() == before
    # Over too: it held the worker's request set, and its shutdown, for the whole 60 s request timeout.
    assert in_progress() == 0
    new_lines = onnx_server.log()[logged_before:]
    assert "refused a request" not in new_lines and "Traceback" not in new_lines, new_lines
    assert_still_serving(onnx_server)


def test_body_above_the_size_limit_is_413(onnx_server):
    body = b'{"instances": [' + b"[1.0, 2.0]," * 900_000 + b"[1.0, 2.0]]}"  # ~9.9 MB > the 8 MiB default
    reply = send(onnx_server, "/v1/models/regression:predict", body)
    assert reply.status_code == 413
    assert "exceeds the limit of 8388608 bytes" in reply.json()["error"]
    assert_still_serving(onnx_server)


def test_chunked_body_above_the_limit_is_413(onnx_server):
    def chunks():
        yield b'{"instances": ['
        for _ in range(100):
            yield b"[1.0, 2.0]," * 10_000
        yield b"[1.0, 2.0]]}"

    reply = httpx.post(f"{onnx_server.url}/v1/models/regression:predict", content=chunks(), timeout=30,
                       headers={"Content-Type": "application/json"})
    assert reply.status_code == 413
    assert_still_serving(onnx_server)


@pytest.mark.parametrize("headers, message", [
    ({}, "missing Authorization header"),
    ({"Authorization": "Bearer not-the-key-at-all-000"}, "wrong API key"),
    ({"Authorization": API_KEY}, "wrong API key"),
])
def test_api_key_is_required_when_configured(guarded_server, headers, message):
    reply = send(guarded_server, "/v1/models/regression:predict", {"instances": [[1.0, 2.0]]}, headers)
    assert reply.status_code == 401
    assert message in reply.json()["error"] and reply.headers["www-authenticate"] == "Bearer"
    v2 = send(guarded_server, "/v2/models/regression/infer", {"inputs": []}, headers)
    assert v2.status_code == 401
    assert_still_serving(guarded_server, {"Authorization": f"Bearer {API_KEY}"})
    assert httpx.get(f"{guarded_server.url}/v2/health/ready").status_code == 200  # health needs no key


def test_refusals_are_counted_by_model_and_reason(onnx_server):
    def count(reason: str, model: str) -> float:
        for line in httpx.get(f"{onnx_server.url}/metrics").text.splitlines():
            if line.startswith("modelserve_rejected_requests_total{") and f'reason="{reason}"' in line \
                    and f'model="{model}"' in line:
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    before = count("invalid_input", "mlp"), count("invalid_body", "mlp")
    send(onnx_server, "/v1/models/mlp:predict", {"instances": [["x"]]})
    send(onnx_server, "/v1/models/mlp:predict", b"{not json")
    assert count("invalid_input", "mlp") == before[0] + 1
    assert count("invalid_body", "mlp") == before[1] + 1
