"""BentoML's traffic series written with labelled children kept per endpoint, up to a bound.

The series themselves are checked on a real two-worker server in test_metrics.py; here, the cache."""

from prometheus_client import CollectorRegistry, Counter

from service.traffic_metrics import Children


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
    # the endpoint label is the raw path: a client probing random paths must not grow the cache without end
    registry = CollectorRegistry()
    requests = Counter("requests", "", ["endpoint"], registry=registry)
    children = Children(limit=3)
    for i in range(10):
        for _ in range(2):
            children.get(f"/probe/{i}", lambda endpoint: requests.labels(endpoint=endpoint)).inc()
    assert len(children) == 3
    assert all(registry.get_sample_value("requests_total", {"endpoint": f"/probe/{i}"}) == 2 for i in range(10))
