"""The HTTP ceiling: what uvicorn alone costs a request, with no framework, no parsing and no model call.

Not a server anyone would run. Each request's body is read whole, as any server must, and thrown away; the
answer is bytes made once per (model, instances) from the raw engine's prediction for the benchmark's example,
so the benchmark's answer check still holds. Every Python server on uvicorn (modelserve, the FastAPI peer, and
BentoML and MLServer underneath) does all of this and more per request, so rows/s above this server's is out of
reach for all of them on the same machine: the bound a per-request target is read against.

Usage (runs in the project's environment):
    CEILING_SPECS='{"MODEL": {"onnx": "PATH", "example": [...]}}' python http_ceiling.py PORT WORKERS
"""

import json
import os
import sys

import numpy as np
import onnxruntime
import uvicorn


def _prediction(spec: dict) -> list:
    """The raw engine's output for one example, computed once at start-up."""
    session = onnxruntime.InferenceSession(spec["onnx"], providers=["CPUExecutionProvider"])
    dtype = np.int64 if "int64" in session.get_inputs()[0].type else np.float32
    example = np.asarray([spec["example"]], dtype=dtype)
    return session.run(None, {session.get_inputs()[0].name: example})[0][0].tolist()


PREDICTIONS = {model: _prediction(spec) for model, spec in json.loads(os.environ.get("CEILING_SPECS", "{}")).items()}
_answers: dict[str, bytes] = {}  # path -> response body, made on its first request
_HEADERS = [(b"content-type", b"application/json")]


def _answer(path: str) -> bytes | None:
    """POST /MODEL/K: the model's prediction K times, as a v1 predictions document."""
    if path not in _answers:
        model, _, count = path.strip("/").partition("/")
        if model not in PREDICTIONS or not count.isdigit():
            return None
        _answers[path] = json.dumps({"predictions": [PREDICTIONS[model]] * int(count)}).encode()
    return _answers[path]


async def app(scope, receive, send) -> None:
    if scope["type"] != "http":  # lifespan: nothing to start or stop
        return
    more = True
    while more:  # the whole body, as a real server reads it
        message = await receive()
        more = message.get("more_body", False)
    body = b'{"ok": true}' if scope["path"] == "/health" else _answer(scope["path"])
    status = 200 if body is not None else 404
    body = body or b'{"error": "unknown path"}'
    await send({"type": "http.response.start", "status": status,
                "headers": [*_HEADERS, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


if __name__ == "__main__":
    port, workers = int(sys.argv[1]), int(sys.argv[2])
    uvicorn.run("http_ceiling:app", app_dir=os.path.dirname(os.path.abspath(__file__)), host="127.0.0.1", port=port,
                workers=workers, log_level="warning", access_log=False, lifespan="off", server_header=False)
