"""Two per-request costs of BentoML 1.4's request path, removed (found by py-spy on a loaded worker).

1. BentoML always installs OpenTelemetry's ASGI middleware. With tracing off our routes are excluded
   from it, but deciding that rebuilds each request's URL from its headers first: 5.5 % of the event
   loop's samples at c=64. With `MODELSERVE_TRACING=false` the middleware is left out; nothing
   observable changes, since excluded routes get no span (and so no X-BentoML-Request-ID) either way.
2. Looking an API method up on the service instance (`APIMethod.__get__`, once per request) runs
   `inspect.signature` and builds a fresh wrapper each time: 3.6 %. The wrapper depends only on the
   method and the instance, so it is built once per instance and kept.

`install()` runs before BentoML builds the app in the worker, like `service.timeouts.install()`.
"""

from _bentoml_impl.server.app import ServiceAppFactory
from _bentoml_sdk.method import APIMethod
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

BENTOML_MIDDLEWARES = ServiceAppFactory.middlewares  # the property, kept so tests can compare
BENTOML_API_METHOD_GET = APIMethod.__get__
_CACHE_ATTRIBUTE = "__modelserve_api_methods__"


def _middlewares_without_tracing(factory: ServiceAppFactory) -> list:
    return [m for m in BENTOML_MIDDLEWARES.fget(factory) if m.cls is not OpenTelemetryMiddleware]


def _api_method_once_per_instance(method: APIMethod, instance, owner):
    if instance is None:
        return method
    built = instance.__dict__.setdefault(_CACHE_ATTRIBUTE, {})
    bound = built.get(method.name)
    if bound is None:
        bound = built[method.name] = BENTOML_API_METHOD_GET(method, instance, owner)
    return bound


def install(tracing: bool) -> None:
    ServiceAppFactory.middlewares = BENTOML_MIDDLEWARES if tracing else property(_middlewares_without_tracing)
    APIMethod.__get__ = _api_method_once_per_instance
