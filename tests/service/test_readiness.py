"""A model whose files were altered or lost does not load; the service says which file and stays not ready."""

import shutil

import httpx

from tests.conftest import SESSION_HOME
from tests.servers import Server


def copy_model(store, name: str) -> None:
    source = SESSION_HOME / "models" / name
    version = (source / "latest").read_text().strip()
    shutil.copytree(source / version, store / name / version)
    (store / name / "latest").write_text(version)


def test_tampered_or_missing_files_keep_the_service_not_ready(trained, tmp_path):
    store = tmp_path / "store"
    for name in ("regression", "mlp", "transformer"):
        copy_model(store, name)
    regression = next((store / "regression").glob("*/model.onnx"))
    regression.write_bytes(regression.read_bytes()[:-1] + b"\x00")  # one byte altered
    next((store / "mlp").glob("*/model.onnx")).unlink()

    server = Server(tmp_path / "server.log", store=store)
    try:
        server.wait_until("/livez")
        server.wait_until("/v2/health/ready", status=503)
        assert httpx.get(f"{server.url}/readyz").status_code == 503
        assert httpx.get(f"{server.url}/v2/health/ready").json() == {"ready": False}
        log = server.log()
        assert "file model.onnx does not match its sha256" in log and "file model.onnx listed in the manifest is " \
            "missing" in log
        refused = httpx.post(f"{server.url}/v1/models/regression:predict", json={"instances": [[1.0, 2.0]]})
        assert refused.status_code == 503 and "model.onnx does not match its sha256" in refused.json()["error"]
        served = httpx.post(f"{server.url}/v1/models/transformer:predict", json={"instances": ["ab"]})
        assert served.status_code == 200  # the intact model still answers
    finally:
        server.stop()
