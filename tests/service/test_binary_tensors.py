"""Triton's binary tensor data extension: what tritonclient sends and asks for unless told otherwise."""

import json
import struct

import httpx
import numpy as np
import pytest
import tritonclient.http as tritonclient

from models.tokenizer import ByteTokenizer
from tests.support import assert_still_serving, local_onnx

INFER = "/v2/models/{}/infer"


def client(server) -> tritonclient.InferenceServerClient:
    return tritonclient.InferenceServerClient(server.url.removeprefix("http://"))


def framed(header: dict, tail: bytes, header_length: str | None = None) -> tuple[bytes, dict]:
    head = json.dumps(header).encode()
    return head + tail, {"Inference-Header-Content-Length": header_length or str(len(head))}


def features_header(shape: list, size: int, datatype: str = "FP32", **extra) -> dict:
    return {"inputs": [{"name": "features", "shape": shape, "datatype": datatype,
                        "parameters": {"binary_data_size": size}, **extra}]}


def test_the_server_says_it_speaks_the_extension(onnx_server):
    assert "binary_tensor_data" in client(onnx_server).get_server_metadata()["extensions"]


@pytest.mark.parametrize("name, batch", [
    ("regression", np.array([[120, 15], [80, 40], [55, 3]], dtype=np.float32)),
    ("mlp", np.array([[0.5], [-1.25]], dtype=np.float32)),
    ("transformer", np.array([ByteTokenizer().encode("qazb"), ByteTokenizer().encode("kbzx")], dtype=np.int64)),
])
def test_triton_client_defaults_send_and_receive_binary_tensors(onnx_server, trained, name, batch):
    tensor = tritonclient.InferInput("input_ids" if name == "transformer" else "features", list(batch.shape),
                                     "INT64" if name == "transformer" else "FP32")
    tensor.set_data_from_numpy(batch)  # binary_data=True by default
    result = client(onnx_server).infer(name, [tensor])  # no outputs named: the client asks for all in binary
    manifest = trained[name]["manifest"]
    output = manifest["outputs"][0]["name"]
    assert result.get_output(output)["parameters"]["binary_data_size"] == 4 * local_onnx(trained, name, batch).size
    np.testing.assert_allclose(result.as_numpy(output), local_onnx(trained, name, batch), rtol=1e-5, atol=1e-6)
    if manifest["task"] != "regression":
        classes = manifest["class_names"]
        expected = [classes[i] for i in local_onnx(trained, name, batch).argmax(axis=1)]
        assert [label.decode() for label in result.as_numpy("label")] == expected


def test_text_as_binary_bytes_and_a_choice_of_output_encodings(onnx_server, trained):
    texts = ["qazb", "kbzx\u00e9"]  # the second ends in a two-byte UTF-8 character
    tensor = tritonclient.InferInput("text", [2], "BYTES")
    tensor.set_data_from_numpy(np.array(texts, dtype=object))
    outputs = [tritonclient.InferRequestedOutput("probabilities", binary_data=True),
               tritonclient.InferRequestedOutput("label", binary_data=False)]
    result = client(onnx_server).infer("transformer", [tensor], outputs=outputs)
    ids = np.zeros((2, 8), dtype=np.int64)  # how the server pads: to a power of two, at least 8
    for row, text in enumerate(texts):
        encoded = ByteTokenizer().encode(text)
        ids[row, :len(encoded)] = encoded
    np.testing.assert_allclose(result.as_numpy("probabilities"), local_onnx(trained, "transformer", ids), rtol=1e-5,
                               atol=1e-6)
    assert "binary_data_size" in result.get_output("probabilities")["parameters"]
    assert "data" in result.get_output("label")  # asked for as JSON
    assert len(result.as_numpy("label")) == 2


def test_a_json_request_can_ask_for_binary_outputs(onnx_server, trained):
    batch = np.array([[120, 15]], dtype=np.float32)
    reply = httpx.post(onnx_server.url + INFER.format("regression"), timeout=30, json={
        "inputs": [{"name": "features", "shape": [1, 2], "datatype": "FP32", "data": [120, 15]}],
        "parameters": {"binary_data_output": True}})
    assert reply.status_code == 200, reply.text
    length = int(reply.headers["inference-header-content-length"])
    header = json.loads(reply.content[:length])
    assert header["outputs"][0]["parameters"] == {"binary_data_size": 4} and "data" not in header["outputs"][0]
    np.testing.assert_allclose(np.frombuffer(reply.content[length:], dtype="<f4"),
                               local_onnx(trained, "regression", batch).ravel(), rtol=1e-5)


TWO_ROWS = np.array([[120, 15], [80, 40]], dtype="<f4").tobytes()  # 16 bytes
BAD_BODIES = {
    # name: (model, body, headers, message fragment)
    "header length not a number": ("regression", *framed(features_header([2, 2], 16), TWO_ROWS, "twelve"),
                                   "Inference-Header-Content-Length must be a non-negative integer, got 'twelve'"),
    "header length past the body": ("regression", *framed(features_header([2, 2], 16), TWO_ROWS, "9999"),
                                    "Inference-Header-Content-Length is 9999 but the body has only"),
    "binary_data_size past the body": ("regression", *framed(features_header([2, 2], 16), TWO_ROWS[:12]),
                                       "inputs[0]: binary_data_size 16 runs past the end of the body (12 bytes left"),
    "bytes nobody accounts for": ("regression", *framed(features_header([2, 2], 16), TWO_ROWS + b"\0" * 4),
                                  "the body has 4 bytes after the JSON header"),
    "shape does not match the bytes": ("regression", *framed(features_header([3, 2], 16), TWO_ROWS),
                                       "input 'features': shape [3, 2] holds 6 values but data has 4"),
    "not whole values": ("regression", *framed(features_header([2, 2], 15), TWO_ROWS[:15]),
                         "binary_data_size 15 is not a whole number of FP32 values (4 bytes each)"),
    "negative size": ("regression", *framed(features_header([2, 2], -16), TWO_ROWS),
                      "binary_data_size must be a non-negative integer, got -16"),
    "data and bytes both": ("regression", *framed(features_header([2, 2], 16, data=[1, 2, 3, 4]), TWO_ROWS),
                            "inputs[0]: has both data and binary_data_size; send one"),
    "datatype with no binary form": ("regression", *framed(features_header([2, 2], 16, datatype="BF16"), TWO_ROWS),
                                     "datatype 'BF16' cannot be sent as binary data"),
    "BYTES element cut short": ("transformer", *framed(
        {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 6}}]},
        struct.pack("<I", 9) + b"ab"), "a BYTES element of 9 bytes runs past its binary_data_size"),
    "BYTES not UTF-8": ("transformer", *framed(
        {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 6}}]},
        struct.pack("<I", 2) + b"\xff\xfe"), "input 'text': BYTES element 0 is not UTF-8 text"),
    "malformed JSON header": ("regression", b'{"inputs": [' + TWO_ROWS, {"Inference-Header-Content-Length": "12"},
                              "Invalid JSON"),
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_a_bad_binary_body_is_a_400_that_names_the_problem(onnx_server, case):
    model, body, headers, fragment = BAD_BODIES[case]
    reply = httpx.post(onnx_server.url + INFER.format(model), content=body, headers=headers, timeout=30)
    assert reply.status_code == 400, reply.text
    assert reply.headers["content-type"].startswith("application/json")
    assert fragment in json.dumps(reply.json()), reply.text
    assert_still_serving(onnx_server)
