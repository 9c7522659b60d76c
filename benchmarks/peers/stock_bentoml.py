"""Peer: a minimal stock BentoML 1.4 service with adaptive batching, as the BentoML examples write it.

    STOCK_ONNX=model.onnx bentoml serve benchmarks.peers.stock_bentoml:Stock --port PORT
Request: POST /predict {"inputs": [[...one row...]]}
"""

import os

import bentoml
import numpy as np
from onnx_session import peer_session


@bentoml.service(workers=int(os.environ.get("PEER_WORKERS", "1")))  # as many processes as modelserve's workers
class Stock:
    def __init__(self) -> None:
        self.session = peer_session(os.environ["STOCK_ONNX"])
        self.input_name = self.session.get_inputs()[0].name
        self.dtype = np.int64 if "int64" in self.session.get_inputs()[0].type else np.float32

    @bentoml.api(batchable=True, max_batch_size=64, max_latency_ms=1000)
    def predict(self, inputs: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: inputs.astype(self.dtype, copy=False)})[0]
