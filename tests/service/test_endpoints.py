"""Every endpoint over real HTTP against a real `bentoml serve`, with both backends."""

import json

import httpx
import numpy as np
import pytest
import tritonclient.http as tritonclient

from models import ByteTokenizer
from tests.support import local_onnx


def post(server, path: str, body) -> httpx.Response:
    return httpx.post(server.url + path, json=body, timeout=30)


def test_v1_regression_rows_and_objects(server, trained):
    rows = [[120.0, 15.0], [80.0, 40.0]]
    reply = post(server, "/v1/models/regression:predict",
                 {"instances": [rows[0], {"age_years": 40.0, "area_m2": 80.0}]})
    assert reply.status_code == 200, reply.text
    expected = local_onnx(trained, "regression", np.array(rows, dtype=np.float32))[:, 0]
    np.testing.assert_allclose(reply.json()["predictions"], expected, rtol=1e-5)


def test_v1_mlp_zigzag(server, trained):
    reply = post(server, "/v1/models/mlp:predict", {"instances": [[-2.0], [0.0], [1.0]]})
    assert reply.status_code == 200, reply.text
    np.testing.assert_allclose(reply.json()["predictions"], [1.0, 1.0, -1.0], atol=0.1)  # the zigzag's knots


def test_v1_transformer_text_and_ids(server, trained):
    ids = ByteTokenizer().encode("qqbzza")
    reply = post(server, "/v1/models/transformer:predict", {"instances": ["xqazzbk", ids]})
    assert reply.status_code == 200, reply.text
    first, second = reply.json()["predictions"]
    assert first["label"] == "a_first" and second["label"] == "b_first"
    assert set(first["probabilities"]) == {"b_first", "a_first"}
    expected = local_onnx(trained, "transformer", np.array([ids], dtype=np.int64))[0]
    np.testing.assert_allclose([second["probabilities"]["b_first"], second["probabilities"]["a_first"]], expected,
                               atol=1e-5)


def test_v1_model_metadata(server, trained):
    reply = httpx.get(f"{server.url}/v1/models/transformer")
    assert reply.status_code == 200
    meta = reply.json()
    assert meta["tag"] == trained["transformer"]["tag"] and meta["version"] == meta["tag"].split(":")[1]
    assert meta["backend"] in ("onnx", "torchscript") and meta["device"] == "cpu"
    assert meta["inputs"][0]["name"] == "input_ids" and meta["class_names"] == ["b_first", "a_first"]


def test_v2_health_server_and_model_metadata(server, trained):
    assert httpx.get(f"{server.url}/v2/health/live").json() == {"live": True}
    assert httpx.get(f"{server.url}/v2/health/ready").json() == {"ready": True}
    assert httpx.get(f"{server.url}/v2").json()["name"] == "modelserve"
    meta = httpx.get(f"{server.url}/v2/models/regression").json()
    (features,) = meta["inputs"]  # (a model without categories lists its one tensor, with the column kinds)
    assert {k: features[k] for k in ("name", "datatype", "shape")} == {"name": "features", "datatype": "FP32",
                                                                       "shape": [-1, 2]}
    assert [(c["name"], c["kind"]) for c in features["parameters"]["columns"]] == [("area_m2", "numeric"),
                                                                                  ("age_years", "numeric")]
    assert meta["versions"] == [trained["regression"]["tag"].split(":")[1]]
    assert httpx.get(f"{server.url}/v2/models/mlp/ready").json() == {"name": "mlp", "ready": True}


def test_v2_versioned_routes_serve_the_served_version_and_refuse_others(onnx_server, trained):
    version = trained["regression"]["tag"].split(":")[1]
    client = tritonclient.InferenceServerClient(onnx_server.url.removeprefix("http://"))
    batch = np.array([[120, 15]], dtype=np.float32)
    tensor = tritonclient.InferInput("features", [1, 2], "FP32")
    tensor.set_data_from_numpy(batch)
    result = client.infer("regression", [tensor], model_version=version)  # POST .../versions/{version}/infer
    np.testing.assert_allclose(result.as_numpy("predictions"), local_onnx(trained, "regression", batch), rtol=1e-5)
    assert client.get_model_metadata("regression", model_version=version)["versions"] == [version]
    body = {"inputs": [{"name": "features", "shape": [1, 2], "datatype": "FP32", "data": [120, 15]}]}
    for reply in (post(onnx_server, "/v2/models/regression/versions/nope/infer", body),
                  httpx.get(f"{onnx_server.url}/v2/models/regression/versions/nope")):
        assert reply.status_code == 404, reply.text
        assert reply.json()["error"] == f"model 'regression' has no version 'nope' here; served versions: {version}"


def test_v2_infer_features_ids_and_text(server, trained):
    reply = post(server, "/v2/models/regression/infer", {"id": "req-1", "inputs": [
        {"name": "features", "shape": [2, 2], "datatype": "FP32", "data": [[120, 15], [80, 40]]}]})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["id"] == "req-1" and body["model_name"] == "regression"
    (out,) = body["outputs"]
    assert out["name"] == "predictions" and out["shape"] == [2, 1] and out["datatype"] == "FP32"
    expected = local_onnx(trained, "regression", np.array([[120, 15], [80, 40]], dtype=np.float32))
    np.testing.assert_allclose(out["data"], expected.reshape(-1), rtol=1e-5)

    ids = ByteTokenizer().encode("zazb")
    reply = post(server, "/v2/models/transformer/infer", {"inputs": [
        {"name": "input_ids", "shape": [1, len(ids)], "datatype": "INT64", "data": ids}]})
    outputs = {o["name"]: o for o in reply.json()["outputs"]}
    assert outputs["label"]["data"] == ["a_first"] and outputs["probabilities"]["shape"] == [1, 2]

    reply = post(server, "/v2/models/transformer/infer", {
        "inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["zazb", "zbza"]}],
        "outputs": [{"name": "label"}]})
    assert reply.json()["outputs"] == [{"name": "label", "datatype": "BYTES", "shape": [2],
                                        "data": ["a_first", "b_first"]}]


def test_backends_agree(onnx_server, torchscript_server):
    body = {"instances": ["xxaybz", "bya", "zzzzzzzzzzzzzzzzzzzzzzzzbzzzzza"]}
    a = post(onnx_server, "/v1/models/transformer:predict", body).json()["predictions"]
    b = post(torchscript_server, "/v1/models/transformer:predict", body).json()["predictions"]
    for x, y in zip(a, b):
        assert x["label"] == y["label"]
        np.testing.assert_allclose(list(x["probabilities"].values()), list(y["probabilities"].values()), atol=1e-5)
    rows = {"instances": [[50.0, 0.0], [250.0, 60.0]]}
    np.testing.assert_allclose(post(onnx_server, "/v1/models/regression:predict", rows).json()["predictions"],
                               post(torchscript_server, "/v1/models/regression:predict", rows).json()["predictions"],
                               rtol=1e-5)


def test_request_above_max_batch_size_is_split_not_refused(onnx_server, trained):
    rows = np.random.default_rng(0).uniform([40, 0], [250, 60], size=(300, 2)).astype(np.float32)
    reply = post(onnx_server, "/v1/models/regression:predict", {"instances": rows.tolist()})
    assert reply.status_code == 200, reply.text
    np.testing.assert_allclose(reply.json()["predictions"], local_onnx(trained, "regression", rows)[:, 0], rtol=1e-5)


def test_health_metrics_and_openapi(onnx_server):
    assert httpx.get(f"{onnx_server.url}/livez").status_code == 200
    assert httpx.get(f"{onnx_server.url}/readyz").status_code == 200
    assert "modelserve_model_info" in httpx.get(f"{onnx_server.url}/metrics").text
    spec = httpx.get(f"{onnx_server.url}/docs.json").json()
    assert {"/v1/models/{name}:predict", "/v2/models/{name}/infer"} <= set(spec["paths"])
    assert "examples" in json.dumps(spec["paths"]["/v1/models/{name}:predict"])


@pytest.mark.parametrize("name", ["regression", "transformer"])
def test_stock_triton_client_works_unchanged(onnx_server, trained, name):
    client = tritonclient.InferenceServerClient(onnx_server.url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(name)
    assert client.get_model_metadata(name)["name"] == name
    if name == "regression":
        batch = np.array([[120, 15], [80, 40]], dtype=np.float32)
        tensor = tritonclient.InferInput("features", list(batch.shape), "FP32")
    else:
        batch = np.array([ByteTokenizer().encode("qazb")], dtype=np.int64)
        tensor = tritonclient.InferInput("input_ids", list(batch.shape), "INT64")
    tensor.set_data_from_numpy(batch, binary_data=False)
    result = client.infer(name, [tensor])
    output = "predictions" if name == "regression" else "probabilities"
    np.testing.assert_allclose(result.as_numpy(output), local_onnx(trained, name, batch), rtol=1e-5, atol=1e-6)


def test_triton_model_configuration_and_statistics_for_triton_tools(onnx_server, trained):
    """What perf_analyzer reads: the batch limit and input shapes without the batch dimension, and server-side
    counts and times that move with the requests served (summed over the workers)."""
    client = tritonclient.InferenceServerClient(onnx_server.url.removeprefix("http://"))
    config = client.get_model_config("regression")
    assert config["platform"] == "onnxruntime_onnx" and config["max_batch_size"] == 64
    assert config["input"] == [{"name": "features", "data_type": "TYPE_FP32", "dims": [2]}]
    assert config["output"] == [{"name": "predictions", "data_type": "TYPE_FP32", "dims": [1]}]
    assert client.get_model_config("transformer")["input"][0] == {"name": "input_ids", "data_type": "TYPE_INT64",
                                                                   "dims": [-1]}

    def stats() -> dict:
        (one,) = client.get_inference_statistics("regression")["model_stats"]
        return one

    before = stats()
    for _ in range(5):
        assert post(onnx_server, "/v1/models/regression:predict", {"instances": [[120, 15], [80, 40]]}).status_code \
            == 200
    after = stats()
    # Triton's tools read the version as an integer: its place in the store; the version itself beside it
    assert after["version"] == "1" and after["modelserve_version"] == trained["regression"]["tag"].split(":")[1]
    assert after["inference_stats"]["success"]["count"] - before["inference_stats"]["success"]["count"] == 5
    assert after["inference_count"] - before["inference_count"] == 10  # rows
    assert 1 <= after["execution_count"] - before["execution_count"] <= 5  # engine calls: batched, or not
    assert after["inference_stats"]["compute_infer"]["ns"] > before["inference_stats"]["compute_infer"]["ns"]
    assert httpx.get(f"{onnx_server.url}/v2/models/nosuchmodel/stats").status_code == 404
