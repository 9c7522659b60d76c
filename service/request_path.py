"""Per-request costs of BentoML 1.4's request path, removed (the first three found by py-spy on a loaded worker).

1. BentoML always installs OpenTelemetry's ASGI middleware. With tracing off our routes are excluded
   from it, but deciding that rebuilds each request's URL from its headers first: 5.5 % of the event
   loop's samples at c=64. With `MODELSERVE_TRACING=false` the middleware is left out; nothing
   observable changes, since excluded routes get no span (and so no X-BentoML-Request-ID) either way.
2. Looking an API method up on the service instance (`APIMethod.__get__`, once per request) runs
   `inspect.signature` and builds a fresh wrapper each time: 3.6 %. The wrapper depends only on the
   method and the instance, so it is built once per instance and kept.
3. Every response passes through `_add_response_headers`, which simple_di's `@inject` wraps: each call
   binds the function's signature to fill in one setting (the log id format): 4 % of the loop's samples
   at c=8. The setting is read once and passed in.
4. BentoML logs every request it refuses for a malformed body (pydantic's ValidationError: bad JSON,
   a missing field) at ERROR with a full traceback, ~20 lines per request. A client's mistake is not
   a server error: a stream of bad requests would flood the log, trip log-based alerts and spend a
   traceback's formatting on each. Those records become one WARNING line naming the route and the
   problem; any other exception keeps BentoML's ERROR and traceback.
5. For each request BentoML lists the parsed body's fields through `model_fields` on the instance,
   which pydantic 2.11+ deprecates with a warning per access (formatted and filtered each time): 2.7 %
   of the loop's samples at c=1. `keep_input_fields()` gives each API's input model a plain class
   attribute with the same fields, which the instance finds first.
6. BentoML's traffic metrics middleware resolves four labelled children per request; it is swapped, in its
   place in the stack, for `service/traffic_metrics.py`, which writes the same series with children kept
   and an `endpoint` label that paths not served here cannot multiply (`service/metric_labels.py`).

`install()` runs before BentoML builds the app in the worker, like `service.timeouts.install()`;
`keep_input_fields()` once the service class is defined.
"""

import logging
from collections.abc import Callable

from _bentoml_impl.server.app import ServiceAppFactory
from _bentoml_sdk.method import APIMethod
from bentoml._internal.container import BentoMLContainer
from bentoml._internal.server import http_app
from bentoml._internal.server.http.instruments import RunnerTrafficMetricsMiddleware
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from pydantic import ValidationError
from starlette.middleware import Middleware

from service.traffic_metrics import TrafficMetrics

BENTOML_MIDDLEWARES = ServiceAppFactory.middlewares  # the property, kept so tests can compare
BENTOML_API_METHOD_GET = APIMethod.__get__
BENTOML_ADD_RESPONSE_HEADERS = ServiceAppFactory._add_response_headers
_CACHE_ATTRIBUTE = "__modelserve_api_methods__"


def _middlewares(tracing: bool, endpoint_of: Callable[[str], str]):
    """BentoML's middleware stack with its traffic metrics swapped for ours, and without tracing unless asked."""

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


def _api_method_once_per_instance(method: APIMethod, instance, owner):
    if instance is None:
        return method
    built = instance.__dict__.setdefault(_CACHE_ATTRIBUTE, {})
    bound = built.get(method.name)
    if bound is None:
        bound = built[method.name] = BENTOML_API_METHOD_GET(method, instance, owner)
    return bound


def _response_headers_with(logging_format: dict):
    undecorated = BENTOML_ADD_RESPONSE_HEADERS.__wrapped__  # what @inject wrapped (functools.wraps keeps it)

    def add_response_headers(factory: ServiceAppFactory, response) -> None:
        undecorated(factory, response, logging_format=logging_format)

    return add_response_headers


BENTOML_EXCEPTION_MESSAGE = "Exception on %s [%s]"  # log_exception()'s format; its args are (path, method)


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


def keep_input_fields(service) -> None:
    for api in service.apis.values():
        model = api.input_spec
        model.model_fields = dict(model.model_fields)  # read on the class: no warning


def install(tracing: bool, endpoint_of: Callable[[str], str]) -> None:
    ServiceAppFactory.middlewares = _middlewares(tracing, endpoint_of)
    APIMethod.__get__ = _api_method_once_per_instance
    ServiceAppFactory._add_response_headers = _response_headers_with(BentoMLContainer.logging_formatting.get())
    http_app.logger.addFilter(CLIENT_ERRORS_AS_WARNINGS)  # the logger BentoML's log_exception() writes to
