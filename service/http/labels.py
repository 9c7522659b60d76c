"""Label values for request metrics, from a bounded set whatever clients send.

Each label value is a series every worker keeps and Prometheus stores. A path keeps its own value only where this
service serves it (a fixed route, or a route under a configured model and its served version); every other path
shares one value, so a scanner requesting random paths cannot add series without end.
"""

from service.protocol.routes import MODEL_PATH

UNMATCHED_ENDPOINT = "(unmatched)"
"""The `endpoint` of every request to a path not served here; no route can be spelled like it."""
UNKNOWN_MODEL = "(unknown)"
"""The `model` of a refusal for a name that is not served; BentoML tags cannot be spelled like it."""

FIXED_PATHS = frozenset({
    "/", "/livez", "/healthz", "/readyz", "/metrics", "/schema.json", "/docs.json",  # BentoML's own routes
    "/v2", "/v2/health/live", "/v2/health/ready", "/v2/repository/index",  # service/protocol/metadata.py
})
STATIC_PREFIX, STATIC_ENDPOINT = "/static_content/", "/static_content/{path}"  # the docs page's files


class MetricLabels:
    def __init__(self, registry) -> None:  # a runtime.registry.ModelRegistry, read when asked: it loads later
        self._registry = registry

    def _serves(self, name: str, version: str | None = None) -> bool:
        versions = self._registry.models.get(name)
        if versions is not None:
            return version is None or versions.find(version) is not None
        # A configured model that failed to load is answered with 503s, which are worth their own series.
        return version is None and name in self._registry.errors

    def model(self, name: str) -> str:
        return name if self._serves(name) else UNKNOWN_MODEL

    def endpoint(self, path: str) -> str:
        if path in FIXED_PATHS:
            return path
        if path.startswith(STATIC_PREFIX):
            return STATIC_ENDPOINT
        match = MODEL_PATH.match(path)
        if match is not None and self._serves(match.group("v1") or match.group("v2"),
                                             match.group("version") or match.group("v1_version")):
            return path
        return UNMATCHED_ENDPOINT
