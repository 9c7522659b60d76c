"""The service's own Prometheus metrics, defined once at module level with explicit buckets.

BentoML starts each worker with PROMETHEUS_MULTIPROC_DIR set before this module is imported, so
these live in multiprocess mode and its /metrics endpoint sums them across workers.
"""

import glob
import os
from collections import defaultdict

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.multiprocess import MultiProcessCollector

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
QUEUE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

INFERENCE_SECONDS = Histogram(
    "modelserve_inference_seconds", "Time of one engine call (a whole batch), by model, version, backend and the "
    "device it ran on (on CUDA, batches warm-up measured faster on the CPU run there)",
    ["model", "version", "backend", "device"], buckets=LATENCY_BUCKETS)
ROWS_PER_ENGINE_CALL = Histogram(
    "modelserve_rows_per_engine_call", "Rows (instances) in one engine call after adaptive batching, by model and "
    "version", ["model", "version"], buckets=ROW_BUCKETS)
QUEUE_WAIT_SECONDS = Histogram(
    "modelserve_queue_wait_seconds", "Time a request waited in the batching queue before its engine call, by model and "
    "version", ["model", "version"], buckets=QUEUE_BUCKETS)
INPUTS_OUTSIDE_TRAINING_RANGE = Counter(
    "modelserve_inputs_outside_training_range", "Instances with a feature below its minimum or above its maximum "
    "in the model's training split, by model and feature; for token models the features are `length` (tokens other "
    "than padding) and `unseen_token` (holds an id absent from training); for tabular models `unseen_category` counts "
    "instances holding a category absent from training (service/runtime/drift.py, service/runtime/schema.py)",
    ["model", "feature"])
TRUNCATED_INSTANCES = Counter(
    "modelserve_truncated_instances", "Token sequences (texts) longer than the model's max_len, read on their first "
    "max_len tokens as the model was trained (a model trained on a user's texts; others refuse them), by model",
    ["model"])
REJECTED_REQUESTS = Counter(
    "modelserve_rejected_requests", "Requests answered with an error status, by model and reason",
    ["model", "reason"])
MODEL_INFO = Gauge(
    "modelserve_model_info", "1 for each loaded model: its tag, backend and device",
    ["model", "tag", "backend", "device"], multiprocess_mode="max")
LOAD_FAILURE_REASONS = ("checksum", "missing_file", "no_manifest", "not_found", "schema", "load_error", "incompatible")
MODEL_LOAD_FAILURES = Counter(
    "modelserve_model_load_failures", "New versions that could not be served (the serving version kept), by model "
    f"and reason: {', '.join(LOAD_FAILURE_REASONS)} (it would break the served version's clients); each at 0 from "
    "the start, so that increase() sees a first failure", ["model", "reason"])
MODEL_READY = Gauge(
    "modelserve_model_ready", "1 once a configured model is loaded and warmed up in every live worker, else 0",
    ["model"], multiprocess_mode="livemin")
PREDICTIONS = Counter(
    "modelserve_predictions", "Prediction requests answered, by model and the version that answered (a canary's "
    "share shows here)", ["model", "version"])
DISAGREEMENT_BUCKETS = (0.0, 1e-6, 1e-4, 1e-3, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 100.0, 1000.0)
SHADOW_DISAGREEMENT = Histogram(
    "modelserve_shadow_disagreement", "Per instance, how far a shadow candidate's answer is from the one the client "
    "got: `abs_diff` (regression: the largest absolute difference over the targets), `label_mismatch` (0 or 1) and "
    "`probability_diff` (the largest absolute difference over the classes) for classifiers",
    ["model", "version", "candidate", "measure"], buckets=DISAGREEMENT_BUCKETS)
SHADOW_REQUESTS = Counter(
    "modelserve_shadow_requests", "Requests copied to a shadow candidate, by outcome: compared, failed (its error "
    "never reaches the client), skipped (too many copies already running)", ["model", "candidate", "outcome"])


def summed(names: set[str], model: str) -> dict[tuple[str, str], float]:
    """(sample name, version) -> the value summed over every worker and every other label, for one model's samples
    of the metrics `names` (reads the workers' metric files: call it off the event loop)."""
    files = glob.glob(os.path.join(os.environ.get("PROMETHEUS_MULTIPROC_DIR", ""), "*.db"))
    sums = defaultdict(float)
    for family in MultiProcessCollector.merge(files, accumulate=True) if files else ():
        if family.name in names:
            for sample in family.samples:
                if sample.labels.get("model") == model and "version" in sample.labels:
                    sums[sample.name, sample.labels["version"]] += sample.value
    return sums
