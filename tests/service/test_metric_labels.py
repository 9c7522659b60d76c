"""Metric labels from what the registry serves (service/metric_labels.py), with the real regression model and a
configured model that fails to load. Over HTTP, test_metrics.py checks that probes of random paths add no series."""

import pytest

from service.config import ServeConfig
from service.http.labels import STATIC_ENDPOINT, UNKNOWN_MODEL, UNMATCHED_ENDPOINT, MetricLabels
from service.runtime.registry import ModelRegistry


@pytest.fixture(scope="module")
def labels(trained):
    registry = ModelRegistry(ServeConfig(models=("regression", "absent-model"), device="cpu"))
    registry.load()
    assert set(registry.models) == {"regression"} and list(registry.errors) == ["absent-model"]
    return MetricLabels(registry), registry.models["regression"].newest.version


def test_every_route_of_a_served_model_keeps_its_path(labels):
    labels, version = labels
    for path in ["/v1/models/regression:predict", "/v1/models/regression", "/v2/models/regression/infer",
                 "/v2/models/regression", "/v2/models/regression/ready",
                 f"/v2/models/regression/versions/{version}", f"/v2/models/regression/versions/{version}/infer",
                 f"/v2/models/regression/versions/{version}/ready"]:
        assert labels.endpoint(path) == path


def test_fixed_routes_keep_their_path_and_docs_files_share_one(labels):
    labels, _ = labels
    for path in ["/", "/livez", "/readyz", "/healthz", "/metrics", "/docs.json", "/schema.json", "/v2",
                 "/v2/health/live", "/v2/health/ready"]:
        assert labels.endpoint(path) == path
    assert labels.endpoint("/static_content/swagger-ui.css") == STATIC_ENDPOINT
    assert labels.endpoint("/static_content/anything/else.js") == STATIC_ENDPOINT


def test_paths_not_served_here_share_one_endpoint(labels):
    labels, version = labels
    for path in ["/v1/models/scanner-1:predict", "/v2/models/scanner-2/infer", "/v2/models/scanner-3",
                 "/v2/models/regression/versions/not-the-served-one/infer",  # a version that is not served
                 f"/v2/models/regression/versions/{version}/explain", "/v1/models/regression:explain",
                 "/v1/models/regression/extra", "/wp-login.php", "/livez/x", "/v2/health", "/v3", ""]:
        assert labels.endpoint(path) == UNMATCHED_ENDPOINT, path


def test_a_configured_model_that_failed_to_load_keeps_its_own_series(labels):
    # its requests are answered 503 (not ready), which an operator wants to see by model
    labels, _ = labels
    assert labels.endpoint("/v1/models/absent-model:predict") == "/v1/models/absent-model:predict"
    assert labels.endpoint("/v2/models/absent-model/ready") == "/v2/models/absent-model/ready"
    assert labels.endpoint("/v2/models/absent-model/versions/1/infer") == UNMATCHED_ENDPOINT  # no version known
    assert labels.model("absent-model") == "absent-model"


def test_model_label_is_the_name_only_where_it_is_served(labels):
    labels, _ = labels
    assert labels.model("regression") == "regression"
    assert labels.model("scanner-1") == UNKNOWN_MODEL
    assert labels.model("mlp") == UNKNOWN_MODEL  # trained, in the store, but not configured on this server
