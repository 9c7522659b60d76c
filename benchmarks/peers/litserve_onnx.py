"""Peer: LitServe with its own batching (`max_batch_size` 64, a 10 ms window) and `fast_queue`, one model per
server (one LitAPI per server, as LitServe's examples write it), PEER_WORKERS worker processes.

Runs in its own virtual environment (benchmarks/peer_systems.py makes it). Usage:
    python litserve_onnx.py PORT MODEL.onnx
Request: POST /predict {"instances": [...]}; a request may carry several rows.
"""

import os
import sys

import litserve as ls
import numpy as np
from onnx_session import peer_session


class OnnxApi(ls.LitAPI):
    def setup(self, device) -> None:
        self.session = peer_session(sys.argv[2])
        self.input_name = self.session.get_inputs()[0].name
        self.dtype = np.int64 if "int64" in self.session.get_inputs()[0].type else np.float32

    def decode_request(self, request: dict) -> np.ndarray:
        return np.asarray(request["instances"], dtype=self.dtype)  # [rows, ...]

    def batch(self, inputs: list[np.ndarray]) -> tuple[np.ndarray, list[int]]:
        return np.concatenate(inputs), [len(x) for x in inputs]  # every request's rows in one engine call

    def predict(self, batch: tuple[np.ndarray, list[int]]) -> tuple[np.ndarray, list[int]]:
        rows, sizes = batch
        return self.session.run(None, {self.input_name: rows})[0], sizes

    def unbatch(self, output: tuple[np.ndarray, list[int]]) -> list[np.ndarray]:
        outputs, sizes = output
        return np.split(outputs, np.cumsum(sizes)[:-1])

    def encode_response(self, output: np.ndarray) -> dict:
        return {"predictions": output.tolist()}


if __name__ == "__main__":
    server = ls.LitServer(OnnxApi(max_batch_size=64, batch_timeout=0.01), accelerator="cpu",
                          workers_per_device=int(os.environ.get("PEER_WORKERS", "1")), fast_queue=True)
    server.run(port=int(sys.argv[1]), host="127.0.0.1", log_level="warning", generate_client_file=False)
