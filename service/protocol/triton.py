"""Triton's model configuration and statistics extensions (`GET /v2/models/{name}/config`, `.../stats`), which
Triton's own tools ask for (perf_analyzer reads the batch limit and input shapes from the one, and server-side
queue and compute times from the other).

The configuration describes what this service does in Triton's terms: the ONNX or TorchScript platform, the
adaptive batcher as dynamic batching, the version policy. The statistics are the service's own Prometheus metrics,
summed over every worker: requests answered, rows and engine calls, queue wait and engine time."""

from service import metrics
from service.lifecycle.versions import stored_versions
from service.protocol import v2

EXTENSIONS = ["model_configuration", "statistics"]  # as Triton names them in GET /v2
DATA_TYPES = {"FP32": "TYPE_FP32", "INT64": "TYPE_INT64", "BYTES": "TYPE_STRING"}
PLATFORMS = {"onnx": ("onnxruntime_onnx", "onnxruntime"), "torchscript": ("pytorch_libtorch", "pytorch")}


def _tensors(specs: list[dict]) -> list[dict]:
    """Triton leaves the batch dimension out of `dims` when the model batches (max_batch_size > 0)."""
    return [{"name": t["name"], "data_type": DATA_TYPES[t["datatype"]], "dims": t["shape"][1:] or [1],
             # one value a row: Triton's way to say so (its tools then expect the shape [N], as metadata lists it)
             **({"reshape": {"shape": []}} if len(t["shape"]) == 1 else {})} for t in specs]


def model_config(model, versions, max_batch_size: int, max_queue: int) -> dict:
    """`model`: the newest served version (runtime/registry.py ServedModel); `versions`: its ModelVersions."""
    metadata = v2.model_metadata(model, versions)
    platform, backend = PLATFORMS[model.backend]
    policy = versions.policy
    version_policy = {"specific": {"versions": [m.version for m in versions.served]}} if policy.versions \
        else {"latest": {"num_versions": policy.latest}}
    return {"name": model.name, "platform": platform, "backend": backend, "version_policy": version_policy,
            "max_batch_size": max_batch_size, "input": _tensors(metadata["inputs"]),
            "output": _tensors(metadata["outputs"]),
            "dynamic_batching": {"max_queue_delay_microseconds": 0, "default_queue_policy": {
                "max_queue_size": max_queue}},  # (no delay: a batch forms while the engine is busy)
            "instance_group": [{"name": model.name, "count": 1,
                                "kind": "KIND_GPU" if model.device == "cuda" else "KIND_CPU"}]}


STAT_METRICS = {"modelserve_predictions", "modelserve_rows_per_engine_call", "modelserve_inference_seconds",
                "modelserve_queue_wait_seconds"}


def model_stats(versions) -> dict:
    """Triton's statistics per served version, from the metrics (reads the workers' files and the store: call it off
    the loop). Triton's tools read `version` as an integer (perf_analyzer stops on anything else), so it is the
    version's place in the store, 1 for the oldest; `modelserve_version` is the version itself."""
    name = versions.newest.name
    sums = metrics.summed(STAT_METRICS, name)
    oldest_first = stored_versions(name)[0][::-1]
    stats = []
    for version in (m.version for m in versions.served):
        def duration(metric: str) -> dict:
            return {"count": int(sums[f"{metric}_count", version]), "ns": int(sums[f"{metric}_sum", version] * 1e9)}

        queue, infer = duration("modelserve_queue_wait_seconds"), duration("modelserve_inference_seconds")
        stats.append({
            "name": name, "version": str(oldest_first.index(version) + 1), "modelserve_version": version,
            "last_inference": 0,
            "inference_count": int(sums["modelserve_rows_per_engine_call_sum", version]),
            "execution_count": int(sums["modelserve_rows_per_engine_call_count", version]),
            "inference_stats": {
                # success: the requests answered, with their time in the queue and the engine (not HTTP or parsing)
                "success": {"count": int(sums["modelserve_predictions_total", version]),
                            "ns": queue["ns"] + infer["ns"]},
                "fail": {"count": 0, "ns": 0}, "queue": queue, "compute_input": {"count": infer["count"], "ns": 0},
                "compute_infer": infer, "compute_output": {"count": infer["count"], "ns": 0},
                "cache_hit": {"count": 0, "ns": 0}, "cache_miss": {"count": 0, "ns": 0}},
            "batch_stats": []})
    return {"model_stats": stats}
