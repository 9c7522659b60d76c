"""Peer: an MLServer custom runtime serving an ONNX file with ONNX Runtime (MLServer ships none for ONNX).

Loaded by MLServer inside its own virtual environment; benchmarks/peers/mlserver_onnx.py writes the
settings that name it. Written the way MLServer's custom-runtime docs write one: decode the V2 input
with NumpyCodec, one session.run, encode the output. Adaptive batching is MLServer's own
(max_batch_size / max_batch_time in model-settings.json): it concatenates requests on the batch axis.
"""

import numpy as np
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from onnx_session import peer_session


class OnnxModel(MLModel):
    async def load(self) -> bool:
        self.session = peer_session(self.settings.parameters.uri)
        self.input_name = self.session.get_inputs()[0].name
        self.dtype = np.int64 if "int64" in self.session.get_inputs()[0].type else np.float32
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        inputs = NumpyCodec.decode_input(payload.inputs[0]).astype(self.dtype, copy=False)  # (B, ...)
        outputs = self.session.run(None, {self.input_name: inputs})[0]
        return InferenceResponse(model_name=self.name, outputs=[NumpyCodec.encode_output("output", outputs)])
