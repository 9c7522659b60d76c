"""Peer: Ray Serve with @serve.batch, one deployment per ONNX file, as Ray Serve's batching guide writes it.

Runs in Ray's own virtual environment (benchmarks/serving.py makes it). Usage:
    python ray_serve_onnx.py PORT NAME=MODEL.onnx [NAME=MODEL.onnx ...]
Requests: POST /NAME {"instances": [[...], ...]}; GET /health answers once every model is deployed.
"""

import os
import signal
import sys

import numpy as np
import ray
from onnx_session import peer_session
from ray import serve
from starlette.requests import Request

# Each replica reserves a CPU by default, so on a 2-core machine the third model would never be placed;
# a fraction lets every model (and the health route) share the cores, as the other systems do.
SHARE = {"num_cpus": 0.25}


# max_ongoing_requests above max_batch_size, as Ray's batching guide says, or the batches never fill.
@serve.deployment(max_ongoing_requests=256, ray_actor_options=SHARE)
class OnnxModel:
    def __init__(self, path: str) -> None:
        self.session = peer_session(path)
        self.input_name = self.session.get_inputs()[0].name
        self.dtype = np.int64 if "int64" in self.session.get_inputs()[0].type else np.float32

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.01)
    async def predict(self, requests: list[np.ndarray]) -> list[list]:
        # One engine call for every request Ray queued; each request may hold several rows.
        outputs = self.session.run(None, {self.input_name: np.concatenate(requests)})[0]  # (sum of rows, ...)
        bounds = np.cumsum([len(r) for r in requests])[:-1]
        return [part.tolist() for part in np.split(outputs, bounds)]

    async def __call__(self, request: Request) -> dict:
        body = await request.json()
        return {"predictions": await self.predict(np.asarray(body["instances"], dtype=self.dtype))}


@serve.deployment(ray_actor_options=SHARE)
class Health:
    async def __call__(self, request: Request) -> dict:
        return {"ok": True}


def main() -> None:
    port = int(sys.argv[1])
    ray.init(num_cpus=None, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    for spec in sys.argv[2:]:
        name, path = spec.split("=", 1)
        # replicas per model, as many as modelserve's workers (each of which serves every model)
        replicas = int(os.environ.get("PEER_WORKERS", "1"))
        serve.run(OnnxModel.options(num_replicas=replicas).bind(path), name=name, route_prefix=f"/{name}")
    serve.run(Health.bind(), name="health", route_prefix="/health")  # last: up means every model is deployed

    def stop(*_) -> None:
        # ray.shutdown() stops the local cluster ray.init() started, Serve's actors with it; serve.shutdown()
        # first only added a 30 s wait for its controller to drain.
        ray.shutdown()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.pause()


if __name__ == "__main__":
    main()
