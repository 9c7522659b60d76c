"""Peer launcher: MLServer with adaptive batching on, one model per ONNX file, Open Inference Protocol.

Runs in MLServer's own virtual environment (benchmarks/serving.py makes it). Usage:
    python mlserver_onnx.py HTTP_PORT,GRPC_PORT,METRICS_PORT REPOSITORY NAME=MODEL.onnx [NAME=MODEL.onnx ...]
MLServer listens on all three; the caller picks them free (adjacent ports can be taken: a bind failure on the
gRPC port leaves MLServer hanging rather than exiting).
Writes a model repository (settings.json + one model-settings.json per model) into the empty directory
REPOSITORY, which the caller removes after the server stops, and execs `mlserver start` on it.
Requests: POST /v2/models/NAME/infer.
"""

import json
import os
import sys
from pathlib import Path

http_port, grpc_port, metrics_port = (int(p) for p in sys.argv[1].split(","))
repository = Path(sys.argv[2])
(repository / "settings.json").write_text(json.dumps({
    "host": "127.0.0.1", "http_port": http_port, "grpc_port": grpc_port, "metrics_port": metrics_port,
    "debug": False, "load_models_at_startup": True,
    # inference worker processes, as many as modelserve's workers (MLServer's default is 1)
    "parallel_workers": int(os.environ.get("PEER_WORKERS", "1")),
}))
for spec in sys.argv[3:]:
    name, path = spec.split("=", 1)
    (repository / name).mkdir()
    (repository / name / "model-settings.json").write_text(json.dumps({
        "name": name, "implementation": "mlserver_runtime.OnnxModel",
        "max_batch_size": 64, "max_batch_time": 0.01,  # adaptive batching on: up to 64 rows or 10 ms
        "parameters": {"uri": path},
    }))
peers = str(Path(__file__).resolve().parent)
os.environ["PYTHONPATH"] = peers + os.pathsep + os.environ.get("PYTHONPATH", "")
# The `mlserver` command's own code, run by this interpreter: an environment made offline (systems.PEER_WHEELS)
# has no console scripts.
START = "import sys; from mlserver.cli import main; sys.argv[0] = 'mlserver'; sys.exit(main())"
os.execv(sys.executable, [sys.executable, "-c", START, "start", str(repository)])
