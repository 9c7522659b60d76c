"""BentoML's traffic series labelled by endpoint, each served path's label kept, up to a bound.

The series themselves are checked on a real two-worker server in test_metrics.py; here, the label cache."""

from service.http.labels import UNMATCHED_ENDPOINT
from service.upstream.traffic_metrics import MAX_CACHED_PATHS, TrafficMetrics


def test_served_paths_keep_their_label_and_a_scanner_cannot_crowd_them_out():
    asked = []

    def endpoint_of(path: str) -> str:
        asked.append(path)
        return path if path.startswith("/v1/models/regression") else UNMATCHED_ENDPOINT

    middleware = TrafficMetrics(app=None, endpoint_of=endpoint_of)
    probes = [f"/probe/{i}" for i in range(MAX_CACHED_PATHS * 2)]
    assert {middleware._endpoint(path) for path in probes} == {UNMATCHED_ENDPOINT}
    served = "/v1/models/regression:predict"
    assert [middleware._endpoint(served) for _ in range(3)] == [served] * 3
    assert asked.count(served) == 1  # kept after the first request, though the probes came first
    assert middleware._endpoint(probes[0]) == UNMATCHED_ENDPOINT and asked.count(probes[0]) == 2  # never kept
