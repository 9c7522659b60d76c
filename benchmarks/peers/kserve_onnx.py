"""Peer: KServe's Python ModelServer (v1 and v2 REST, no batching of its own), one kserve.Model per ONNX file,
PEER_WORKERS worker processes.

Runs in its own virtual environment (benchmarks/peer_systems.py makes it). Usage:
    python kserve_onnx.py PORT NAME=MODEL.onnx [NAME=MODEL.onnx ...]
Request: POST /v1/models/NAME:predict {"instances": [...]}.
"""

import os
import sys

import numpy as np
from kserve import Model, ModelServer
from onnx_session import peer_session


class OnnxModel(Model):
    def __init__(self, name: str, path: str) -> None:
        super().__init__(name)
        self.path = path
        self.load()

    def load(self) -> bool:
        self.session = peer_session(self.path)
        self.input_name = self.session.get_inputs()[0].name
        self.dtype = np.int64 if "int64" in self.session.get_inputs()[0].type else np.float32
        self.ready = True
        return self.ready

    # With several workers KServe pickles each model into its worker processes: the session is made again there.
    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "session"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.load()

    async def predict(self, payload: dict, headers: dict | None = None, response_headers: dict | None = None) -> dict:
        rows = np.asarray(payload["instances"], dtype=self.dtype)
        return {"predictions": self.session.run(None, {self.input_name: rows})[0].tolist()}


if __name__ == "__main__":
    models = [OnnxModel(*spec.split("=", 1)) for spec in sys.argv[2:]]
    ModelServer(http_port=int(sys.argv[1]), workers=int(os.environ.get("PEER_WORKERS", "1")), enable_grpc=False,
                enable_docs_url=False).start(models)
