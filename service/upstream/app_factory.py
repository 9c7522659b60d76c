"""Changes to how BentoML builds and runs a worker's app, each removing a per-request cost or a fault a profile or
a test found (figures in benchmarks/profiling.md):

1. Middlewares: OpenTelemetry's left out unless tracing is on (5.5 % of the loop even for excluded routes);
   BentoML's traffic metrics swapped for ours (traffic_metrics.py).
2. BentoML's TimeoutMiddleware never cancels its per-request timer (60 s of timers alive under load, walked by
   every full collection) and runs each request in a task of its own: ours cancels the timer and runs the request
   in its own task.

(Five more, for BentoML's API dispatch, went once the fast lane answered every prediction before it: caching
`APIMethod.__get__`, un-injecting `_add_response_headers`, a validation failure logged as one warning, the input
models' fields read without pydantic's warning, and Triton's binary framing in the v2 input model's parser.)
"""

import asyncio
from collections.abc import Callable

from _bentoml_impl.server.app import ServiceAppFactory
from bentoml._internal.server.http import traffic
from bentoml._internal.server.http.instruments import RunnerTrafficMetricsMiddleware
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from starlette.middleware import Middleware
from starlette.responses import JSONResponse

from service.upstream.traffic_metrics import TrafficMetrics

BENTOML_MIDDLEWARES = ServiceAppFactory.middlewares  # the originals, kept so that tests can compare and restore
BENTOML_TIMEOUT_MIDDLEWARE = traffic.TimeoutMiddleware


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


def install(tracing: bool, endpoint_of: Callable[[str], str]) -> None:
    """Before BentoML builds the app in this worker (it reads TimeoutMiddleware from `traffic` at that moment)."""
    ServiceAppFactory.middlewares = _middlewares(tracing, endpoint_of)
    traffic.TimeoutMiddleware = TimeoutMiddleware
