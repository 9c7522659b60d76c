"""Well-formed JSON prediction requests answered without BentoML's per-request API dispatch.

For each request BentoML builds a Starlette Request and a context, routes it, parses and validates the
body with a pydantic model made from the API method's signature, looks the method up, calls it and turns
its answer into a Response. For our prediction routes that is a fixed cost on top of the handlers' own
work: in a py-spy profile of a loaded worker (bulk regression) BentoML's endpoint wrapper, routing and
context took ~30 % of the samples, more than parsing, batching and the engine together.

This middleware sits inside RequestGuard (so after the API key and body-size checks, on the path the guard
normalised) and inside BentoML's traffic metrics and request timeout, which still see every request. A JSON
POST to /v1/models/NAME:predict or /v2/models/NAME/infer whose body has the top-level shape the API
declares goes straight to the same handlers the API methods call; so does a v2 body in Triton's binary framing
(tritonclient's default) whose JSON header has that shape, with the bytes after it. Anything else goes on to
BentoML unchanged, its body replayed: malformed JSON, missing or mistyped fields and broken framing get
BentoML's own 400 and log line, and every other route BentoML's router. With tracing on, every request goes
through BentoML, whose spans and trace headers belong to its dispatch.
"""

import contextlib
import logging

import orjson
from starlette.responses import JSONResponse

from service import handlers
from service.binary_tensors import HEADER as BINARY_HEADER
from service.binary_tensors import split_body
from service.guard import PREDICTION_ROUTE, REASON_HEADER, VERSION_KEY, replay

_BINARY_HEADER = BINARY_HEADER.encode()
logger = logging.getLogger("modelserve")


def _v1_fields(document) -> tuple | None:
    """`instances`, as the v1 API declares it (a list), or None to let BentoML say what is wrong."""
    if isinstance(document, dict) and isinstance(document.get("instances"), list):
        return (document["instances"],)
    return None


def _v2_fields(document) -> tuple | None:
    """(inputs, id, outputs, parameters) as the v2 API declares them, or None to let BentoML say what is wrong."""
    if not isinstance(document, dict):
        return None
    inputs, request_id = document.get("inputs"), document.get("id")
    outputs, parameters = document.get("outputs"), document.get("parameters")
    if not (isinstance(inputs, list) and all(isinstance(t, dict) for t in inputs)):
        return None
    if request_id is not None and not isinstance(request_id, str):
        return None
    if outputs is not None and not (isinstance(outputs, list) and all(isinstance(t, dict) for t in outputs)):
        return None
    if parameters is not None and not isinstance(parameters, dict):
        return None
    return inputs, request_id, outputs, parameters


async def _read_body(receive) -> bytes | None:
    """The whole body, or None when the client left before sending it all: what arrived is not the request,
    even where it parses (it was once answered as malformed JSON, or run)."""
    chunks, more = [], True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


class FastLane:
    def __init__(self, app, registry, enabled: bool = True) -> None:
        self.app = app
        self.registry = registry
        self.enabled = enabled

    async def __call__(self, scope, receive, send) -> None:
        route = PREDICTION_ROUTE.match(scope["path"]) if self.enabled and scope["type"] == "http" else None
        if route is None or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        framing = next((value for key, value in scope["headers"] if key == _BINARY_HEADER), None)
        if framing is not None and route.group("v1"):
            return await self.app(scope, receive, send)  # v1 has no binary framing: BentoML says what is wrong
        body = await _read_body(receive)
        if body is None:
            return  # (nobody to answer; like Starlette's ClientDisconnect, not a refusal)
        # broken framing leaves an empty JSON part, so it goes on to BentoML's path and the handler's refusal
        json_part, binary = (body, None) if framing is None else split_body(body, framing.decode("latin-1"))
        document = None
        with contextlib.suppress(orjson.JSONDecodeError):
            document = orjson.loads(json_part)
        fields = _v1_fields(document) if route.group("v1") else _v2_fields(document)
        if fields is None:
            return await self.app(scope, replay([{"type": "http.request", "body": body}], receive), send)
        try:
            if route.group("v1"):
                response = await handlers.v1_predict(self.registry, route.group("v1"), *fields)
            else:
                inputs, request_id, outputs, parameters = fields
                version = scope.get(VERSION_KEY, route.group("version"))  # set aside by the guard, else in the path
                response = await handlers.v2_infer(self.registry, route.group("v2"), version, inputs,
                                                   request_id, outputs, parameters, binary)
        except Exception:
            # what BentoML's dispatch does with an unexpected error: log it whole, answer a JSON 500
            logger.exception("Exception on %s [%s]", scope["path"], scope["method"])
            response = JSONResponse({"error": f"internal error while serving {scope['path']}; see the server log"},
                                    status_code=500, headers={REASON_HEADER.decode(): "internal_error"})
        await response(scope, receive, send)
