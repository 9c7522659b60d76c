"""Triton's binary tensor data extension to the Open Inference Protocol, which tritonclient uses by default.

The body is the JSON header (its length in `Inference-Header-Content-Length`) followed by each binary input's
bytes in input order; such an input carries `"parameters": {"binary_data_size": N}` instead of `"data"`. Numbers
are little-endian; a BYTES element is a 4-byte little-endian length and its bytes. A reply is framed the same way
for the outputs asked for in binary (`binary_data` per output, or `binary_data_output` on the request). Besides
compatibility it skips JSON for the tensors: numeric data becomes an array with one `frombuffer`. The handler
decodes the bytes, so every error in them is refused like any other bad input.
"""

import struct
from dataclasses import dataclass

import numpy as np
import orjson
from starlette.responses import Response

from service.errors import InvalidInput

HEADER = "inference-header-content-length"
EXTENSION = "binary_tensor_data"
DTYPES = {"BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
          "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64, "FP16": np.float16,
          "FP32": np.float32, "FP64": np.float64}


@dataclass(frozen=True)
class BinaryBody:
    """What followed the JSON header, or why the body could not be split."""

    tail: memoryview  # of the request's body: no copy of what may be megabytes
    framing_error: str | None = None


def split_body(body: bytes, header_value: str) -> tuple[bytes, BinaryBody]:
    """(JSON header, what follows it), or an empty header and why the body cannot be split."""
    length = int(header_value) if header_value.strip().isdigit() else None
    if length is None:
        why = f"Inference-Header-Content-Length must be a non-negative integer, got {header_value[:40]!r}"
    elif length > len(body):
        why = f"Inference-Header-Content-Length is {length} but the body has only {len(body)} bytes"
    else:
        return body[:length], BinaryBody(memoryview(body)[length:])
    return b"", BinaryBody(memoryview(b""), why)


def _decode_bytes_elements(raw: memoryview, name: str) -> list[str]:
    texts, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise InvalidInput(f"input {name!r}: BYTES data ends inside an element's 4-byte length")
        (size,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + size > len(raw):
            raise InvalidInput(f"input {name!r}: a BYTES element of {size} bytes runs past its binary_data_size")
        try:
            texts.append(str(raw[offset:offset + size], "utf-8"))
        except UnicodeDecodeError:
            raise InvalidInput(f"input {name!r}: BYTES element {len(texts)} is not UTF-8 text") from None
        offset += size
    return texts


def _decode(spec: dict, index: int, raw: memoryview) -> np.ndarray | list[str]:
    name, datatype = spec.get("name"), spec.get("datatype")
    if datatype == "BYTES":
        return _decode_bytes_elements(raw, name)
    if not isinstance(datatype, str) or datatype not in DTYPES:
        raise InvalidInput(f"inputs[{index}] ({name}): datatype {datatype!r} cannot be sent as binary data")
    dtype = np.dtype(DTYPES[datatype]).newbyteorder("<")
    if len(raw) % dtype.itemsize:
        raise InvalidInput(f"input {name!r}: binary_data_size {len(raw)} is not a whole number of {datatype} "
                           f"values ({dtype.itemsize} bytes each)")
    return np.frombuffer(raw, dtype=dtype)  # its shape is checked and applied as for JSON data (protocol_v2)


def attach_binary_inputs(inputs: list, body: BinaryBody) -> None:
    """Give every input sent as bytes its decoded data, in place; refuse a body whose sizes do not add up."""
    if body.framing_error:
        raise InvalidInput(body.framing_error)
    tail, offset = body.tail, 0  # (slices of a memoryview share the body's bytes)
    for index, spec in enumerate(inputs if isinstance(inputs, list) else []):
        parameters = spec.get("parameters") if isinstance(spec, dict) else None
        size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
        if size is None:
            continue
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise InvalidInput(f"inputs[{index}]: binary_data_size must be a non-negative integer, got {size!r}")
        if "data" in spec:
            raise InvalidInput(f"inputs[{index}]: has both data and binary_data_size; send one")
        if offset + size > len(tail):
            raise InvalidInput(f"inputs[{index}]: binary_data_size {size} runs past the end of the body "
                               f"({len(tail) - offset} bytes left after the JSON header)")
        spec["data"] = _decode(spec, index, tail[offset:offset + size])
        offset += size
    if offset != len(tail):
        raise InvalidInput(f"the body has {len(tail) - offset} bytes after the JSON header and the inputs' "
                           "binary data that no input's binary_data_size accounts for")


def binary_output_names(returned: list[str], requested: list | None, parameters: dict | None) -> set[str]:
    """The returned outputs to send as bytes: each output's own binary_data, else the request's
    binary_data_output."""
    default = bool(isinstance(parameters, dict) and parameters.get("binary_data_output"))
    own = {}
    for output in requested or []:
        choice = output.get("parameters") if isinstance(output, dict) else None
        if isinstance(choice, dict) and "binary_data" in choice:
            own[output.get("name")] = bool(choice["binary_data"])
    return {name for name in returned if own.get(name, default)}


def _encode(tensor: dict) -> bytes:
    if tensor["datatype"] == "BYTES":
        encoded = [text.encode("utf-8") for text in tensor["data"]]
        return b"".join(struct.pack("<I", len(e)) + e for e in encoded)
    return np.ascontiguousarray(tensor["data"], dtype=np.dtype(DTYPES[tensor["datatype"]]).newbyteorder("<")).tobytes()


def binary_reply(reply: dict, binary_names: set[str], headers: dict[str, str]) -> Response:
    """The reply framed as JSON header + bytes, for the outputs named in `binary_names`."""
    blobs = []
    for tensor in reply["outputs"]:
        if tensor["name"] in binary_names:
            blob = _encode(tensor)
            del tensor["data"]
            tensor["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
    header = orjson.dumps(reply, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(b"".join([header, *blobs]), media_type="application/octet-stream",
                    headers={"Inference-Header-Content-Length": str(len(header)), **headers})
