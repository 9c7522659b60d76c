"""The BentoML service: API declarations and wiring. The work is in the modules beside it."""

import gc
import logging
from typing import Any

import bentoml
from pydantic import Field
from starlette.responses import Response

from service import handlers
from service.binary_tensors import accept_binary_bodies, binary_body_of
from service.config import ServeConfig
from service.fast_lane import FastLane
from service.guard import VERSION_KEY, RequestGuard
from service.in_flight import install as count_requests_in_flight
from service.metadata_app import build_metadata_app
from service.metric_labels import MetricLabels
from service.openapi import OpenApiDocument
from service.parent_watch import end_with_parent
from service.registry import ModelRegistry
from service.request_log import RequestLog, use_json_logs
from service.request_path import install as trim_request_path
from service.request_path import keep_input_fields
from service.timeouts import install as install_timeout_fix

CONFIG = ServeConfig.from_env()
REGISTRY = ModelRegistry(CONFIG)  # one per worker process
LABELS = MetricLabels(REGISTRY)  # metric labels from what REGISTRY serves, never from raw paths
install_timeout_fix()  # all three before BentoML builds the app and starts uvicorn in this worker
trim_request_path(tracing=CONFIG.tracing, endpoint_of=LABELS.endpoint)
count_requests_in_flight()
# BentoML leaves the root logger at WARNING; the startup lines (each model loaded, its batch limits) are INFO.
logging.getLogger("modelserve").setLevel(logging.INFO)
if CONFIG.log_format == "json":
    use_json_logs()


def _answer(ctx: bentoml.Context, result: dict | Response) -> dict | Response:
    """BentoML sets the reply status from ctx when an API takes ctx, so a refusal's status goes there too."""
    if isinstance(result, Response):
        ctx.response.status_code = result.status_code
    return result


V1_EXAMPLE = [[120.0, 15.0]]
V2_EXAMPLE = [{"name": "features", "shape": [1, 2], "datatype": "FP32", "data": [120.0, 15.0]}]


UNTRACED_ROUTES = [] if CONFIG.tracing else ["/v1/models/", "/v2/", "/livez", "/readyz", "/metrics"]
METADATA_APP = build_metadata_app(REGISTRY, bentoml.__version__)


@bentoml.asgi_app(METADATA_APP, path="/")
@bentoml.service(name="modelserve", workers=CONFIG.workers, traffic={"timeout": 60},
                 metrics={"enabled": True}, logging={"access": {"enabled": False}},
                 tracing={"excluded_urls": UNTRACED_ROUTES})
class ModelServe:
    def __init__(self) -> None:  # (in each worker process)
        end_with_parent()
        REGISTRY.load()

    @bentoml.on_startup
    async def warm_up(self) -> None:
        await REGISTRY.warm_up()
        # torch, onnx and bentoml leave ~175,000 objects that live as long as the worker; a full garbage
        # collection walks them all (~70 ms), which showed as a p99 of 100+ ms at any load. Freezing
        # them keeps collections to what requests allocate.
        gc.collect()
        gc.freeze()

    async def __is_ready__(self) -> bool:
        return REGISTRY.ready

    @bentoml.api(route="/v1/models/{name}:predict")
    async def v1_predict(
        self, ctx: bentoml.Context,
        instances: list[Any] = Field(description="Feature rows (lists in training order or objects keyed by "
                                     "feature name), or for the transformer token-id lists or strings",
                                     examples=[V1_EXAMPLE, [{"area_m2": 120.0, "age_years": 15.0}], ["xqazbk"]]),
    ) -> dict:
        """KServe v1 prediction: {"instances": [...]} -> {"predictions": [...]}."""
        return _answer(ctx, await handlers.v1_predict(REGISTRY, ctx.request.path_params["name"], instances))

    @bentoml.api(route="/v2/models/{name}/infer")
    async def v2_infer(
        self, ctx: bentoml.Context,
        inputs: list[dict[str, Any]] = Field(description="One tensor: FP32 'features' [N, F], INT64 'input_ids' "
                                             "[N, L] padded with 0, or BYTES 'text' [N]", examples=[V2_EXAMPLE]),
        id: str | None = Field(default=None, description="Echoed in the reply"),
        parameters: dict[str, Any] | None = None,
        outputs: list[dict[str, Any]] | None = Field(default=None, description="Output tensors to return"),
    ) -> dict:
        """Open Inference Protocol (KServe v2) inference, with tensors as JSON or as binary data (Triton's
        extension: the JSON header's length in Inference-Header-Content-Length, then the bytes)."""
        request = ctx.request
        version = request.scope.get(VERSION_KEY)  # a versioned path arrives here with its version aside (guard.py)
        return _answer(ctx, await handlers.v2_infer(REGISTRY, request.path_params["name"], version, inputs, id, outputs,
                                                    parameters, binary_body_of(request)))


keep_input_fields(ModelServe)
accept_binary_bodies(ModelServe.apis["v2_infer"].input_spec)
ModelServe.add_asgi_middleware(RequestLog, access=CONFIG.log_format == "json", version_of=REGISTRY.version_of)
ModelServe.add_asgi_middleware(OpenApiDocument, service=ModelServe, metadata_routes=METADATA_APP.routes,
                               model_names=lambda: sorted(REGISTRY.models))
ModelServe.add_asgi_middleware(RequestGuard, api_key=CONFIG.api_key, max_body_bytes=CONFIG.max_body_bytes,
                               model_label=LABELS.model)
ModelServe.add_asgi_middleware(FastLane, registry=REGISTRY, enabled=not CONFIG.tracing)  # inside the guard
