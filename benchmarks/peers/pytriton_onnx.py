"""Peer: NVIDIA Triton Inference Server through PyTriton: the real `tritonserver` binary (its C++ HTTP front end
and dynamic batcher) in front of a Python callable running ONNX Runtime on the same file, PEER_WORKERS instances of
the callable per model.

Runs in a virtual environment made from Debian's /usr/bin/python3.11 (Triton's Python backend stub links the
system's libpython3.11), with numpy<2. Usage:
    python pytriton_onnx.py HTTP_PORT,GRPC_PORT,METRICS_PORT NAME=MODEL.onnx [NAME=MODEL.onnx ...]
Request: POST /v2/models/NAME/infer, the model's ONNX input as a tensor [N, ...].
"""

import os
import sys

import numpy as np
from onnx_session import peer_session
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import DEFAULT_PROTECTED_ENDPOINTS, Triton, TritonConfig, TritonSecurityConfig

MAX_BATCH = 64


def infer_function(path: str):
    session = peer_session(path)
    input_name, output_name = session.get_inputs()[0].name, session.get_outputs()[0].name

    @batch
    def infer(**inputs):  # Triton's dynamic batcher has stacked the queued requests' rows already
        return {output_name: session.run(None, {input_name: inputs[input_name]})[0]}

    return infer, session


def tensors(session, which: str) -> list[Tensor]:
    kinds = {"tensor(float)": np.float32, "tensor(int64)": np.int64}
    return [Tensor(name=t.name, dtype=kinds[t.type], shape=tuple(-1 for _ in t.shape[1:]))
            for t in getattr(session, f"get_{which}")()]


if __name__ == "__main__":
    http, grpc, metrics = (int(p) for p in sys.argv[1].split(","))
    instances = int(os.environ.get("PEER_WORKERS", "1"))
    config = TritonConfig(http_address="127.0.0.1", http_port=http, grpc_address="127.0.0.1", grpc_port=grpc,
                          metrics_port=metrics, log_verbose=0)
    # statistics open, as a Triton of one's own has them: perf_analyzer reads them for its server-side columns
    security = TritonSecurityConfig(restricted_endpoints=[e for e in DEFAULT_PROTECTED_ENDPOINTS if e != "statistics"])
    with Triton(config=config, security_config=security) as triton:
        for spec in sys.argv[2:]:
            name, path = spec.split("=", 1)
            functions = [infer_function(path) for _ in range(instances)]  # a session per instance
            session = functions[0][1]
            triton.bind(model_name=name, infer_func=[f for f, _ in functions], inputs=tensors(session, "inputs"),
                        outputs=tensors(session, "outputs"),
                        config=ModelConfig(max_batch_size=MAX_BATCH, batcher=DynamicBatcher(
                            max_queue_delay_microseconds=100)), strict=False)
        triton.serve()
