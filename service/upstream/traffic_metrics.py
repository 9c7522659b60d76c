"""BentoML's per-request traffic metrics (`bentoml_service_request_*`, read by the dashboard and the alerts), the
same series for less work: BentoML's middleware resolves four labelled children per request (1.10-1.22x the rows
with it off, profiling.md); here each child is resolved once per endpoint and status, and kept. The `endpoint`
label is the raw path only for paths served here (http/labels.py), so probing random paths adds no series."""

from collections.abc import Callable
from functools import lru_cache
from timeit import default_timer

from bentoml._internal.context import server_context
from bentoml._internal.server.http.instruments import RunnerTrafficMetricsMiddleware

from service.http.labels import UNMATCHED_ENDPOINT

MAX_CACHED_PATHS = 256  # a bound for safety: served paths are a handful per model; unserved ones are never kept


class TrafficMetrics(RunnerTrafficMetricsMiddleware):
    def __init__(self, app, *args, endpoint_of: Callable[[str], str], **kwargs) -> None:
        super().__init__(app, *args, **kwargs)
        self._endpoint_of = endpoint_of  # path -> `endpoint` label (MetricLabels.endpoint)
        self._label_by_path: dict[str, str] = {}

    def _endpoint(self, path: str) -> str:
        label = self._label_by_path.get(path)
        if label is None:
            label = self._endpoint_of(path)
            if label != UNMATCHED_ENDPOINT and len(self._label_by_path) < MAX_CACHED_PATHS:
                self._label_by_path[path] = label
        return label

    def _setup(self) -> None:
        super()._setup()
        names = {"service_name": server_context.bento_name, "service_version": server_context.bento_version,
                 "runner_name": server_context.service_name}  # fixed once the worker serves
        self._last_request = self.metrics_last_request_timestamp.labels(**names)
        in_progress, total, duration = (self.metrics_request_in_progress, self.metrics_request_total,
                                        self.metrics_request_duration)
        # Keyed by label, a bounded set (every label is a served path, a fixed route or the one shared value); the
        # caches' bounds are for safety.
        self._in_progress = lru_cache(MAX_CACHED_PATHS)(
            lambda endpoint: in_progress.labels(endpoint=endpoint, **names))
        self._finished = lru_cache(MAX_CACHED_PATHS * 4)(  # (a few statuses per endpoint)
            lambda endpoint, status: (total.labels(endpoint=endpoint, http_response_code=status, **names),
                                      duration.labels(endpoint=endpoint, http_response_code=status, **names)))
        self._skip_paths = tuple(self.skip_paths)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] == "/metrics":
            await super().__call__(scope, receive, send)  # websockets, and the scrape itself, as BentoML does
            return
        if not self._is_setup:
            self._setup()
        path = scope["path"]
        endpoint = self._endpoint(path)
        if not path.startswith(self._skip_paths):
            self._last_request.set_to_current_time()
        started, status = default_timer(), 0

        async def send_and_count(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                total, duration = self._finished(endpoint, status)
                total.inc()
                duration.observe(max(default_timer() - started, 0))
            await send(message)

        in_progress = self._in_progress(endpoint)
        in_progress.inc()
        try:
            await self.app(scope, receive, send_and_count)
        finally:
            in_progress.dec()
