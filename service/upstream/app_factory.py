"""Changes to how BentoML builds and runs a worker's app, each removing a per-request cost or a fault a profile or
a test found (figures in benchmarks/profiling.md):

1. Middlewares: OpenTelemetry's left out unless tracing is on (5.5 % of the loop even for excluded routes);
   BentoML's traffic metrics swapped for ours (traffic_metrics.py).
2. A body that fails validation is a client's mistake: one WARNING line, not an ERROR with a traceback.
3. pydantic warns on every `model_fields` read on an instance, which BentoML does per request: the input models get
   the fields as a class attribute.
4. BentoML's TimeoutMiddleware never cancels its per-request timer (60 s of timers alive under load, walked by
   every full collection) and runs each request in a task of its own: ours cancels the timer and runs the request
   in its own task.
5. BentoML parses every body as JSON: the v2 input model also reads Triton's binary framing (protocol/binary.py).

(Two more, for BentoML's API dispatch, went once the fast lane took every well-formed prediction past it: caching
`APIMethod.__get__` and un-injecting `_add_response_headers`.)
"""

import asyncio
import logging
from collections.abc import Callable

from _bentoml_impl.server.app import ServiceAppFactory
from bentoml._internal.server import http_app
from bentoml._internal.server.http import traffic
from bentoml._internal.server.http.instruments import RunnerTrafficMetricsMiddleware
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from pydantic import ValidationError
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse

from service.upstream.traffic_metrics import TrafficMetrics

BENTOML_MIDDLEWARES = ServiceAppFactory.middlewares  # the originals, kept so that tests can compare and restore
BENTOML_TIMEOUT_MIDDLEWARE = traffic.TimeoutMiddleware
BENTOML_EXCEPTION_MESSAGE = "Exception on %s [%s]"  # log_exception()'s format; its args are (path, method)


def _middlewares(tracing: bool, endpoint_of: Callable[[str], str]) -> property:
    def middlewares(factory: ServiceAppFactory) -> list:
        kept = []
        for middleware in BENTOML_MIDDLEWARES.fget(factory):
            if middleware.cls is OpenTelemetryMiddleware and not tracing:
                continue
            if middleware.cls is RunnerTrafficMetricsMiddleware:
                middleware = Middleware(TrafficMetrics, *middleware.args, **middleware.kwargs, endpoint_of=endpoint_of)
            kept.append(middleware)
        return kept

    return property(middlewares)


class ClientErrorsAsWarnings(logging.Filter):
    """Turns BentoML's 'Exception on PATH' record for a body that failed validation into one warning line."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, ValidationError) and record.msg == BENTOML_EXCEPTION_MESSAGE:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in error.errors())
            record.msg, record.args = "refused a request to %s [%s] with 400: %s", (*record.args, problems)
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info = record.exc_text = None
        return True


CLIENT_ERRORS_AS_WARNINGS = ClientErrorsAsWarnings()


class TimeoutMiddleware(BENTOML_TIMEOUT_MIDDLEWARE):
    """BentoML's 504 when no response has started within the timeout, run in the request's own task: no task, future
    and timer per request, and no timer left behind (the deadline is dropped once the response starts)."""

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        started = False

        async def mark_started(message) -> None:
            nonlocal started
            if not started:
                started = True
                deadline.reschedule(None)  # a response under way may take as long as it takes, as in BentoML
            await send(message)

        try:
            async with asyncio.timeout(self.timeout) as deadline:
                await self.app(scope, receive, mark_started)
        except TimeoutError:
            if not deadline.expired():
                raise  # (the app's own)
            await JSONResponse({"error": f"Not able to process the request in {self.timeout} seconds"},
                               status_code=504)(scope, receive, send)


def _keep_input_fields(service) -> None:
    for api in service.apis.values():
        model = api.input_spec
        model.model_fields = dict(model.model_fields)  # read on the class: no warning


def _accept_binary_bodies(input_model, split_body: Callable, header: str) -> None:
    """The input model keeps only the JSON header's fields and leaves the bytes after it on `request.state`."""
    parse_json_body = input_model.from_http_request

    async def from_http_request(cls, request: Request, serde):
        header_value = request.headers.get(header)
        if header_value is None:
            return await parse_json_body(request, serde)
        json_part, binary = split_body(await request.body(), header_value)
        request.state.binary_body = binary
        if binary.framing_error:  # the handler refuses it; the fields only have to exist
            return cls.model_construct(**{name: None for name in cls.model_fields})
        return cls.model_validate_json(json_part)  # malformed JSON: BentoML's 400, as for a plain JSON body

    input_model.from_http_request = classmethod(from_http_request)


def install(tracing: bool, endpoint_of: Callable[[str], str]) -> None:
    """Before BentoML builds the app in this worker (it reads TimeoutMiddleware from `traffic` at that moment)."""
    ServiceAppFactory.middlewares = _middlewares(tracing, endpoint_of)
    http_app.logger.addFilter(CLIENT_ERRORS_AS_WARNINGS)  # the logger BentoML's log_exception() writes to
    traffic.TimeoutMiddleware = TimeoutMiddleware


def adapt_service(service, binary_api: str, split_body: Callable, header: str) -> None:
    """Once the service class is defined: plain input fields for every API, binary bodies for `binary_api`."""
    _keep_input_fields(service)
    _accept_binary_bodies(service.apis[binary_api].input_spec, split_body, header)
