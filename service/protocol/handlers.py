"""Where a prediction runs and returns: pick the version, parse, batch, format (and copy to a shadow), or refuse.
Called by the API methods (app.py) and by the fast lane (http/fast_lane.py) alike."""

import numpy as np
import orjson
from starlette.responses import JSONResponse, Response

from service.errors import REASON_HEADER, RETRY_AFTER_SECONDS, InvalidInput, NonFiniteOutput, RequestError
from service.lifecycle.shadow import copy_to as shadow_copy
from service.protocol import v1, v2
from service.protocol.binary import BinaryBody, attach_binary_inputs, binary_output_names, binary_reply
from service.protocol.routes import VERSION_HEADER, PredictionRoute
from service.runtime.registry import ModelRegistry


def json_reply(body: dict, version: str) -> Response:
    """Serialise here: a ready Response skips BentoML's output-schema path, which built a JSON schema per
    request (16 % of a loaded worker's samples in a py-spy profile)."""
    return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json",
                    headers={VERSION_HEADER: version})


def refusal(error: RequestError) -> JSONResponse:
    headers = {REASON_HEADER: error.reason}
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


async def v1_predict(registry: ModelRegistry, route: PredictionRoute, instances: list) -> Response:
    try:
        model, shadow = registry.route(route)
        registry.check_count(len(instances))
        outputs = finite(await model.batcher.infer(model.schema.parse(instances)))
        if shadow is not None:
            shadow_copy(shadow, model, lambda candidate: candidate.schema.parse(instances), outputs)
        model.recorder.answered()
        return json_reply({"predictions": v1.format_predictions(model, outputs)}, model.version)
    except RequestError as error:
        return refusal(error)


def deadline_of(parameters: dict | None) -> float | None:
    """The OIP request's `timeout` parameter, in microseconds as Triton and tritonclient use it, as seconds."""
    timeout = parameters.get("timeout") if isinstance(parameters, dict) else None
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout <= 0:
        raise InvalidInput(f"parameters.timeout must be a positive integer of microseconds, got {timeout!r}")
    return min(timeout, 2**53) / 1e6  # (285 years: JSON allows an integer past any float, and none waits so long)


async def v2_infer(registry: ModelRegistry, route: PredictionRoute, inputs: list, request_id: str | None,
                   parameters: dict | None, requested_outputs: list | None, binary: BinaryBody | None) -> Response:
    """`binary`: the bytes after the JSON header of a binary-framed body (protocol/binary.py), else None."""
    try:
        model, shadow = registry.route(route)
        if binary is not None:
            attach_binary_inputs(inputs, binary)
        batch = v2.parse_inputs(model, inputs, registry.check_count)
        outputs = finite(await model.batcher.infer(batch, deadline_of(parameters)))
        if shadow is not None:
            shadow_copy(shadow, model, lambda candidate: v2.parse_inputs(candidate, inputs, registry.check_count),
                        outputs)
        model.recorder.answered()
        reply = {"model_name": model.name, "model_version": model.artifacts.version,
                 "outputs": v2.format_outputs(model, outputs, requested_outputs)}
        if request_id is not None:
            reply["id"] = request_id
        as_bytes = binary_output_names([t["name"] for t in reply["outputs"]], requested_outputs, parameters)
        version = model.version
        return binary_reply(reply, as_bytes, {VERSION_HEADER: version}) if as_bytes else json_reply(reply, version)
    except RequestError as error:
        return refusal(error)
