"""BentoML's traffic series written with labelled children kept per endpoint, up to a bound.

The series themselves are checked on a real two-worker server in test_metrics.py; here, the cache."""

from prometheus_client import CollectorRegistry, Counter

from service.http.labels import UNMATCHED_ENDPOINT
from service.upstream.traffic_metrics import MAX_CACHED_PATHS, Children, TrafficMetrics


def test_each_key_resolves_once_and_counts_land_on_its_own_series():
    registry = CollectorRegistry()
    requests = Counter("requests", "", ["endpoint"], registry=registry)
    resolved = []

    def resolve(endpoint):
        resolved.append(endpoint)
        return requests.labels(endpoint=endpoint)

    children = Children(limit=8)
    for endpoint in ["/a", "/b", "/a", "/a"]:
        children.get(endpoint, resolve).inc()
    assert resolved == ["/a", "/b"]
    assert registry.get_sample_value("requests_total", {"endpoint": "/a"}) == 3
    assert registry.get_sample_value("requests_total", {"endpoint": "/b"}) == 1


def test_keys_past_the_limit_are_resolved_every_time_and_not_kept():
    # a bound for safety: whatever the keys, the cache stops growing
    registry = CollectorRegistry()
    requests = Counter("requests", "", ["endpoint"], registry=registry)
    children = Children(limit=3)
    for i in range(10):
        for _ in range(2):
            children.get(f"/probe/{i}", lambda endpoint: requests.labels(endpoint=endpoint)).inc()
    assert len(children) == 3
    assert all(registry.get_sample_value("requests_total", {"endpoint": f"/probe/{i}"}) == 2 for i in range(10))


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
