"""The fast lane (service/http/fast_lane.py): every POST to a prediction route is answered there, with the real
regression model behind it: well-formed bodies by the handlers, any other with a 400 saying what is wrong; other
routes and methods go on to BentoML with their body intact. Over HTTP, test_bad_input.py and test_endpoints.py
check the answers and refusals clients see."""

import asyncio

import numpy as np
import orjson

from service.config import ServeConfig
from service.http.fast_lane import FastLane
from service.http.guard import RequestGuard
from service.protocol.binary import HEADER as BINARY_HEADER
from service.protocol.routes import REQUEST_MODELS
from service.runtime.registry import ModelRegistry

ROW = [120.0, 15.0]


class Dispatch:
    """Stands in for BentoML's dispatch behind the lane: records each body it is handed, answers 418."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope, receive, send) -> None:
        chunks, more = [], True
        while more:
            message = await receive()
            chunks.append(message["body"])
            more = message.get("more_body", False)
        self.bodies.append(b"".join(chunks))
        await send({"type": "http.response.start", "status": 418, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def post(lane: FastLane, path: str, body: bytes, headers: tuple = ((b"content-type", b"application/json"),),
               method: str = "POST") -> tuple[int, bytes]:
    scope = {"type": "http", "method": method, "path": path, "headers": list(headers)}
    pending = [{"type": "http.request", "body": body[:7], "more_body": True},  # in two chunks, as a client may
               {"type": "http.request", "body": body[7:], "more_body": False}]
    sent = []

    async def receive():
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    # behind the guard, as in the service: it matches the route once and leaves it in the scope for the lane
    await RequestGuard(lane, api_key=None, max_body_bytes=1 << 20, model_label=str)(scope, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def run(scenario) -> None:
    async def with_a_registry():
        registry = ModelRegistry(ServeConfig(models=("regression",), device="cpu"))
        registry.load()
        await registry.warm_up()  # the batcher belongs to this event loop, as in a worker
        dispatch = Dispatch()
        await scenario(FastLane(dispatch, registry, REQUEST_MODELS), dispatch, registry)

    asyncio.run(with_a_registry())


def test_well_formed_predictions_skip_the_dispatch_and_match_the_engine(trained):
    async def scenario(lane, dispatch, registry):
        expected = registry.get("regression").batcher.run_now(np.asarray([ROW] * 3, dtype=np.float32))[:, 0]
        status, body = await post(lane, "/v1/models/regression:predict", orjson.dumps({"instances": [ROW] * 3}))
        assert status == 200 and np.allclose(orjson.loads(body)["predictions"], expected)
        v2 = {"id": "r1", "inputs": [{"name": "features", "shape": [3, 2], "datatype": "FP32", "data": ROW * 3}]}
        status, body = await post(lane, "/v2/models/regression/infer", orjson.dumps(v2))
        reply = orjson.loads(body)
        assert status == 200 and reply["id"] == "r1" and np.allclose(reply["outputs"][0]["data"], expected)
        # a version in the path is checked against the one served, as on BentoML's path
        status, body = await post(lane, "/v2/models/regression/versions/nope/infer", orjson.dumps(v2))
        assert status == 404 and b"has no version 'nope'" in body
        # a refusal from the handlers is theirs too: the same 400 and message BentoML's path gives
        status, body = await post(lane, "/v1/models/regression:predict", b'{"instances": [[1, 2, 3]]}')
        assert status == 400 and b"instance 0: expected 2 numbers" in body
        # the body is read as JSON whatever it is labelled (`curl -d` labels it a form)
        status, body = await post(lane, "/v1/models/regression:predict", orjson.dumps({"instances": [ROW]}),
                                  ((b"content-type", b"application/x-www-form-urlencoded"),))
        assert status == 200 and np.allclose(orjson.loads(body)["predictions"], expected[:1])
        assert dispatch.bodies == []

    run(scenario)


def test_binary_framed_v2_requests_skip_the_dispatch_with_their_bytes(trained):
    # tritonclient's default: the JSON header, then each input's little-endian bytes; outputs asked for in binary
    async def scenario(lane, dispatch, registry):
        rows = np.asarray([ROW, [80.0, 3.0], [200.0, 40.0]], dtype=np.float32)
        expected = registry.get("regression").batcher.run_now(rows)
        header = orjson.dumps({"inputs": [{"name": "features", "shape": [3, 2], "datatype": "FP32",
                                           "parameters": {"binary_data_size": rows.nbytes}}],
                               "parameters": {"binary_data_output": True}})
        status, body = await post(lane, "/v2/models/regression/infer", header + rows.astype("<f4").tobytes(),
                                  ((BINARY_HEADER.encode(), str(len(header)).encode()),))
        assert status == 200 and dispatch.bodies == []
        size = expected.size * 4  # the reply: its JSON header, then the output's FP32 bytes
        (output,) = orjson.loads(body[:-size])["outputs"]
        assert output["parameters"] == {"binary_data_size": size} and "data" not in output
        assert np.allclose(np.frombuffer(body[-size:], "<f4"), expected.ravel())
        # bytes that do not add up are refused by the handler, as on BentoML's path
        status, body = await post(lane, "/v2/models/regression/infer", header + rows.tobytes() + b"\0" * 4,
                                  ((BINARY_HEADER.encode(), str(len(header)).encode()),))
        assert status == 400 and b"4 bytes after the JSON header" in body and dispatch.bodies == []

    run(scenario)


BINARY = (b"content-type", b"application/octet-stream")


def test_any_other_body_is_refused_there_with_what_is_wrong(trained):
    cases = [
        (b'{"instances": [[1, 2]', (), "body: Invalid JSON"),
        (b'{"rows": [[1, 2]]}', (), "instances: Field required"),
        (b'{"instances": {"a": 1}}', (), "instances: Input should be a valid array"),
        (b'[[1, 2]]', (), "Input should be an object"),
        (b'{"instances": []}', ((BINARY_HEADER.encode(), b"17"),), "the v2 protocol's; send a v1 request as JSON"),
    ]
    v2_cases = [
        (b'{"inputs": [{"name": "features"}], "id": 7}', (), "id: Input should be a valid string"),
        (b'{"inputs": [1]}', (), "inputs.0: Input should be an object"),
        (b'{"inputs": []}', ((BINARY_HEADER.encode(), b"15"),), "is 15 but the body has only 14 bytes"),
        (b'{"inputs": []}', ((BINARY_HEADER.encode(), b"x"),), "must be a non-negative integer, got 'x'"),
        (b'{"inputs": [}', ((BINARY_HEADER.encode(), b"13"),), "body: Invalid JSON"),
    ]

    async def scenario(lane, dispatch, registry):
        for path, cases_here in (("/v1/models/regression:predict", cases), ("/v2/models/regression/infer", v2_cases)):
            for body, headers, fragment in cases_here:
                status, answer = await post(lane, path, body, (BINARY, *headers) if headers else
                                            ((b"content-type", b"application/json"),))
                assert status == 400 and fragment in orjson.loads(answer)["error"], (path, body, answer)
        assert dispatch.bodies == []
        # JSON that orjson refuses and pydantic reads (Infinity) reaches the handler, which says what is wrong
        status, answer = await post(lane, "/v1/models/regression:predict", b'{"instances": [[1, -Infinity]]}')
        assert status == 400 and b"-inf is not a finite number" in answer

    run(scenario)


def test_other_routes_and_methods_go_on_to_bentoml_with_their_body_intact(trained):
    async def scenario(lane, dispatch, registry):
        body = b'{"instances": [[1, 2]]}'
        assert (await post(lane, "/v2/models/regression", body))[0] == 418  # not a prediction route
        assert (await post(lane, "/v1/models/regression:predict", body, method="PUT"))[0] == 418
        assert dispatch.bodies == [body, body]

    run(scenario)
