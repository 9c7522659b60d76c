"""Request handling shared by the API declarations: look up the model, parse, batch, format, or refuse."""

import numpy as np
from starlette.responses import JSONResponse

from service import protocol_v1, protocol_v2
from service.errors import RequestError
from service.guard import REASON_HEADER
from service.registry import ModelRegistry


def refusal(error: RequestError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers={REASON_HEADER.decode(): error.reason})


async def v1_predict(registry: ModelRegistry, name: str, instances: list) -> dict | JSONResponse:
    try:
        model = registry.get(name)
        registry.check_count(len(protocol_v1.require_list(instances)))
        outputs: np.ndarray = await model.batcher.infer(protocol_v1.parse_instances(model, instances))
        return {"predictions": protocol_v1.format_predictions(model, outputs)}
    except RequestError as error:
        return refusal(error)


async def v2_infer(registry: ModelRegistry, name: str, inputs: list, request_id: str | None,
                   requested_outputs: list | None) -> dict | JSONResponse:
    try:
        model = registry.get(name)
        batch = protocol_v2.parse_inputs(model, inputs, registry.check_count)
        outputs = await model.batcher.infer(batch)
        reply = {"model_name": model.name, "model_version": model.artifacts.version,
                 "outputs": protocol_v2.format_outputs(model, outputs, requested_outputs)}
        if request_id is not None:
            reply["id"] = request_id
        return reply
    except RequestError as error:
        return refusal(error)
