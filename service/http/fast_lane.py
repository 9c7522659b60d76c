"""Where every POST to a prediction route is answered, past BentoML's per-request API dispatch (building a Request
and a context, routing, validating, looking the method up: ~30 % of a loaded worker's samples, profiling.md).

Inside the guard, and inside BentoML's traffic metrics and timeout, which see every request. A body with its request
model's top-level shape (protocol/routes.py), JSON or binary-framed, goes to the handler; any other is refused with
the 400 its request model's validation gives, and one warning line in the log. The API methods (app.py) declare the
routes: BentoML builds its router and the OpenAPI document from them.
"""

import contextlib
import logging

import orjson
from pydantic import BaseModel, ValidationError
from starlette.responses import JSONResponse

from service.errors import REASON_HEADER, InvalidBody, validation_problems
from service.protocol import handlers
from service.protocol.binary import HEADER as BINARY_HEADER
from service.protocol.binary import split_body
from service.protocol.routes import BodyShape, PredictionRoute, route_of

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
    def __init__(self, app, registry, request_models: dict[str, type[BaseModel]]) -> None:
        self.app = app
        self.registry = registry
        self.request_models = request_models  # protocol ("v1", "v2") -> the body its API method takes
        self.shapes = {protocol: BodyShape.of(model) for protocol, model in request_models.items()}

    async def __call__(self, scope, receive, send) -> None:
        route = route_of(scope) if scope["type"] == "http" else None
        if route is None or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        body = await _read_body(receive)
        if body is None:
            return  # (nobody to answer; like Starlette's ClientDisconnect, not a refusal)
        try:
            response = await self._answer(route, body, scope["headers"])
        except InvalidBody as error:
            logger.warning("refused a request to %s [%s] with 400: %s", scope["path"], scope["method"], error)
            response = handlers.refusal(error)
        except Exception:
            # what BentoML's dispatch does with an unexpected error: log it whole, answer a JSON 500
            logger.exception("Exception on %s [%s]", scope["path"], scope["method"])
            response = JSONResponse({"error": f"internal error while serving {scope['path']}; see the server log"},
                                    status_code=500, headers={REASON_HEADER: "internal_error"})
        await response(scope, receive, send)

    async def _answer(self, route: PredictionRoute, body: bytes, headers: list):
        framing = next((value for key, value in headers if key == _BINARY_HEADER), None)
        binary = None
        if framing is not None:
            if route.protocol == "v1":
                raise InvalidBody("binary-framed bodies (Inference-Header-Content-Length) are the v2 protocol's; "
                                  "send a v1 request as JSON")
            body, binary = split_body(body, framing.decode("latin-1"))
            if binary.framing_error:
                raise InvalidBody(binary.framing_error)
        fields = self._fields(route.protocol, body)
        if route.protocol == "v1":
            return await handlers.v1_predict(self.registry, route, *fields)
        return await handlers.v2_infer(self.registry, route, *fields, binary=binary)

    def _fields(self, protocol: str, body: bytes) -> tuple:
        """The body's top-level fields, in the API method's order; InvalidBody saying what is wrong with it."""
        with contextlib.suppress(orjson.JSONDecodeError):
            fields = self.shapes[protocol].values(orjson.loads(body))
            if fields is not None:
                return fields
        try:  # (the slow way, for what it says)
            request = self.request_models[protocol].model_validate_json(body)
        except ValidationError as error:
            raise InvalidBody(validation_problems(error, "body")) from None
        return tuple(getattr(request, name) for name, *_ in self.shapes[protocol].fields)
