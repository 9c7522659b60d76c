"""Peer: a hand-written async FastAPI + ONNX Runtime server, one session.run per request, no batching.

Runs in its own virtual environment (benchmarks/serving.py makes it), with PEER_WORKERS uvicorn worker processes
(as many as modelserve's workers), each loading every model. Usage:
    python fastapi_onnx.py PORT NAME=MODEL.onnx [NAME=MODEL.onnx ...]
"""

import os
import sys

import numpy as np
import uvicorn
from fastapi import FastAPI, HTTPException, Request
from onnx_session import peer_session

SPECS = "FASTAPI_PEER_SPECS"  # the model files, for the worker processes, which import this module by name
sessions = {}
for spec in os.environ.get(SPECS, "").split(os.pathsep) if os.environ.get(SPECS) else ():
    name, path = spec.split("=", 1)
    session = peer_session(path)
    sessions[name] = (session, session.get_inputs()[0].name, session.get_inputs()[0].type)

app = FastAPI()


@app.get("/health")
async def health() -> dict:
    return {"ok": True}


@app.post("/v1/models/{name}:predict")
async def predict(name: str, request: Request) -> dict:
    if name not in sessions:
        raise HTTPException(404, f"unknown model {name}")
    session, input_name, input_type = sessions[name]
    body = await request.json()
    dtype = np.int64 if "int64" in input_type else np.float32
    outputs = session.run(None, {input_name: np.asarray(body["instances"], dtype=dtype)})[0]
    return {"predictions": outputs.tolist()}


if __name__ == "__main__":
    os.environ[SPECS] = os.pathsep.join(sys.argv[2:])
    uvicorn.run("fastapi_onnx:app", app_dir=os.path.dirname(os.path.abspath(__file__)), host="127.0.0.1",
                port=int(sys.argv[1]), workers=int(os.environ.get("PEER_WORKERS", "1")), log_level="warning",
                access_log=False)
