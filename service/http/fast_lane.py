"""Well-formed prediction requests answered without BentoML's per-request API dispatch (building a Request and
a context, routing, validating, looking the method up: ~30 % of a loaded worker's samples, profiling.md).

Inside the guard, and inside BentoML's traffic metrics and timeout, which still see every request: a POST to a
prediction route whose body has its request model's shape (protocol/routes.py), JSON or binary-framed, goes
straight to the handler the API method calls. Anything else goes on to BentoML with its body replayed, for
BentoML's own 400 and log line. With tracing on, everything goes through BentoML, whose spans belong to its dispatch.
"""

import contextlib
import logging

import orjson
from starlette.responses import JSONResponse

from service.errors import REASON_HEADER
from service.http.guard import replay
from service.protocol import handlers
from service.protocol.binary import HEADER as BINARY_HEADER
from service.protocol.binary import split_body
from service.protocol.routes import BodyShape, route_of

_BINARY_HEADER = BINARY_HEADER.encode()
logger = logging.getLogger("modelserve")


async def _read_body(receive) -> bytes | None:
    """The whole body, or None when the client left before sending it all."""
    chunks, more = [], True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


class FastLane:
    def __init__(self, app, registry, shapes: dict[str, BodyShape], enabled: bool = True) -> None:
        self.app = app
        self.registry = registry
        self.shapes = shapes  # protocol ("v1", "v2") -> the body its API method takes
        self.enabled = enabled

    async def __call__(self, scope, receive, send) -> None:
        route = route_of(scope) if self.enabled and scope["type"] == "http" else None
        if route is None or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        framing = next((value for key, value in scope["headers"] if key == _BINARY_HEADER), None)
        if framing is not None and route.protocol == "v1":
            return await self.app(scope, receive, send)  # v1 has no binary framing: BentoML says what is wrong
        body = await _read_body(receive)
        if body is None:
            return  # (nobody to answer; like Starlette's ClientDisconnect, not a refusal)
        # broken framing leaves an empty JSON part, so it goes on to BentoML's path and the handler's refusal
        json_part, binary = (body, None) if framing is None else split_body(body, framing.decode("latin-1"))
        document = None
        with contextlib.suppress(orjson.JSONDecodeError):
            document = orjson.loads(json_part)
        fields = self.shapes[route.protocol].values(document)
        if fields is None:
            return await self.app(scope, replay([{"type": "http.request", "body": body}], receive), send)
        try:
            if route.protocol == "v1":
                response = await handlers.v1_predict(self.registry, route, *fields)
            else:
                response = await handlers.v2_infer(self.registry, route, *fields, binary=binary)
        except Exception:
            # what BentoML's dispatch does with an unexpected error: log it whole, answer a JSON 500
            logger.exception("Exception on %s [%s]", scope["path"], scope["method"])
            response = JSONResponse({"error": f"internal error while serving {scope['path']}; see the server log"},
                                    status_code=500, headers={REASON_HEADER: "internal_error"})
        await response(scope, receive, send)
