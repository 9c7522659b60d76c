"""The fast lane (service/http/fast_lane.py): well-formed JSON predictions go straight to the handlers, with the
real regression model behind them; everything else reaches BentoML's dispatch with its body intact. Over
HTTP, test_bad_input.py and test_endpoints.py check that answers and refusals are what they always were."""

import asyncio

import numpy as np
import orjson

from service.config import ServeConfig
from service.http.fast_lane import FastLane
from service.http.guard import RequestGuard
from service.protocol.binary import HEADER as BINARY_HEADER
from service.protocol.routes import BODY_SHAPES
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


async def post(lane: FastLane, path: str, body: bytes, headers: tuple = (), method: str = "POST") -> tuple[int, bytes]:
    scope = {"type": "http", "method": method, "path": path,
             "headers": [(b"content-type", b"application/json"), *headers]}
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
        await scenario(FastLane(dispatch, registry, BODY_SHAPES), dispatch, registry)

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


def test_everything_else_reaches_bentoml_with_its_body_intact(trained):
    cases = [
        ("/v1/models/regression:predict", b'{"instances": [[1, 2]', ()),  # malformed JSON: BentoML's 400
        ("/v1/models/regression:predict", b'{"rows": [[1, 2]]}', ()),  # no instances
        ("/v1/models/regression:predict", b'{"instances": {"a": 1}}', ()),  # instances not a list
        ("/v1/models/regression:predict", b'[[1, 2]]', ()),  # not an object
        ("/v2/models/regression/infer", b'{"inputs": [{"name": "features"}], "id": 7}', ()),  # id not a string
        ("/v2/models/regression/infer", b'{"inputs": [1]}', ()),  # a tensor that is no object
        ("/v2/models/regression/infer", b'{"inputs": []}', ((BINARY_HEADER.encode(), b"15"),)),  # length past the end
        ("/v2/models/regression/infer", b'{"inputs": []}', ((BINARY_HEADER.encode(), b"x"),)),  # length not a number
        ("/v2/models/regression/infer", b'{"inputs": [}', ((BINARY_HEADER.encode(), b"13"),)),  # header not JSON
        ("/v1/models/regression:predict", b'{"instances": []}', ((BINARY_HEADER.encode(), b"17"),)),  # v1: no framing
        ("/v2/models/regression", b'{"instances": [[1, 2]]}', ()),  # not a prediction route
    ]

    async def scenario(lane, dispatch, registry):
        for path, body, headers in cases:
            assert (await post(lane, path, body, headers))[0] == 418, (path, body)
        assert dispatch.bodies == [body for _, body, _ in cases]
        assert (await post(lane, "/v1/models/regression:predict", b'{"instances": [[1, 2]]}', method="PUT"))[0] == 418

    run(scenario)


def test_with_tracing_on_every_request_goes_to_bentoml(trained):
    async def scenario(lane, dispatch, registry):
        lane.enabled = False  # what app.py sets when MODELSERVE_TRACING is on: spans belong to BentoML's dispatch
        assert (await post(lane, "/v1/models/regression:predict", orjson.dumps({"instances": [ROW]})))[0] == 418

    run(scenario)
