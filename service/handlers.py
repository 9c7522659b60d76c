"""Request handling shared by the API declarations: look up the model, parse, batch, format, or refuse."""

import numpy as np
import orjson
from starlette.responses import JSONResponse, Response

from service import binary_tensors, protocol_v1, protocol_v2
from service.binary_tensors import BinaryBody
from service.errors import RETRY_AFTER_SECONDS, InvalidInput, NonFiniteOutput, RequestError
from service.guard import REASON_HEADER
from service.registry import ModelRegistry


def json_reply(body: dict) -> Response:
    """Serialise here: a ready Response skips BentoML's output-schema path, which built a JSON schema per
    request (16 % of a loaded worker's samples in a py-spy profile)."""
    return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")


def refusal(error: RequestError) -> JSONResponse:
    headers = {REASON_HEADER.decode(): error.reason}
    if error.status in (429, 503):  # (overload and not-ready: both pass; say when to try again)
        headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


def finite(outputs: np.ndarray) -> np.ndarray:
    """This request's outputs, refused if any is inf or NaN. Valid input can still overflow a model: a regression
    sent 3e38 (a float32, so accepted) answers inf. JSON has no inf (orjson writes null, which a client would take
    for a missing value) and a prediction that is not a number is no answer; the client is told which instance.
    Other requests in the same batch are unaffected: rows do not mix in any of the models."""
    if not np.isfinite(outputs).all():
        i = int(np.argwhere(~np.isfinite(outputs))[0][0])
        raise NonFiniteOutput(f"instance {i}: the model's output is {outputs[i].tolist()}, not finite; the input "
                              "lies too far outside the range the model was trained on")
    return outputs


async def v1_predict(registry: ModelRegistry, name: str, instances: list) -> Response:
    try:
        model = registry.get(name)
        registry.check_count(len(protocol_v1.require_list(instances)))
        outputs = finite(await model.batcher.infer(protocol_v1.parse_instances(model, instances)))
        return json_reply({"predictions": protocol_v1.format_predictions(model, outputs)})
    except RequestError as error:
        return refusal(error)


def deadline_of(parameters: dict | None) -> float | None:
    """The OIP request's `timeout` parameter, in microseconds as Triton and tritonclient use it, as seconds."""
    timeout = parameters.get("timeout") if isinstance(parameters, dict) else None
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout <= 0:
        raise InvalidInput(f"parameters.timeout must be a positive integer of microseconds, got {timeout!r}")
    return timeout / 1e6


async def v2_infer(registry: ModelRegistry, name: str, version: str | None, inputs: list, request_id: str | None,
                   requested_outputs: list | None, parameters: dict | None, binary: BinaryBody | None) -> Response:
    """`version`: from a versioned path, else None; `binary`: the bytes after the JSON header of a
    binary-framed body (binary_tensors.py), else None."""
    try:
        model = registry.get(name, version)
        if binary is not None:
            binary_tensors.attach_binary_inputs(inputs, binary)
        batch = protocol_v2.parse_inputs(model, inputs, registry.check_count)
        outputs = finite(await model.batcher.infer(batch, deadline_of(parameters)))
        reply = {"model_name": model.name, "model_version": model.artifacts.version,
                 "outputs": protocol_v2.format_outputs(model, outputs, requested_outputs)}
        if request_id is not None:
            reply["id"] = request_id
        as_bytes = binary_tensors.binary_output_names([t["name"] for t in reply["outputs"]], requested_outputs,
                                                      parameters)
        return binary_tensors.binary_reply(reply, as_bytes) if as_bytes else json_reply(reply)
    except RequestError as error:
        return refusal(error)
