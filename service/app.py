"""The BentoML service: what it serves and how the layers are wired. A prediction enters at http/ (guard, fast
lane), is parsed and answered by protocol/, waits in batching/ and runs in runtime/ (see README, Architecture)."""

import asyncio
import gc
import logging

import bentoml
from starlette.responses import Response

from service import upstream
from service.config import ServeConfig
from service.http.fast_lane import FastLane
from service.http.guard import RequestGuard
from service.http.labels import MetricLabels
from service.http.request_log import RequestLog, use_json_logs
from service.lifecycle.watch import StoreWatcher
from service.parent_watch import end_with_parent
from service.protocol import handlers
from service.protocol.metadata import build_metadata_app
from service.protocol.openapi import OpenApiDocument
from service.protocol.routes import REQUEST_MODELS, V1Reply, V1Request, V2Reply, V2Request, route_of
from service.runtime.registry import ModelRegistry

CONFIG = ServeConfig.from_env()
REGISTRY = ModelRegistry(CONFIG)  # one per worker process
LABELS = MetricLabels(REGISTRY)  # metric labels from what REGISTRY serves, never from raw paths
upstream.install_in_worker(tracing=CONFIG.tracing, endpoint_of=LABELS.endpoint)
# BentoML leaves the root logger at WARNING; the startup lines (each model loaded) are INFO.
logging.getLogger("modelserve").setLevel(logging.INFO)
if CONFIG.log_format == "json":
    use_json_logs()

UNTRACED_ROUTES = [] if CONFIG.tracing else ["/v1/models/", "/v2/", "/livez", "/readyz", "/metrics"]
# Follows the repository API's loads and unloads across workers always, and new versions in the store when asked to.
WATCHER = StoreWatcher(REGISTRY, CONFIG.watch_seconds)
METADATA_APP = build_metadata_app(REGISTRY, bentoml.__version__, watcher=lambda: WATCHER)


def _answer(ctx: bentoml.Context, response: Response) -> Response:
    """BentoML sets the reply's status from ctx when an API takes ctx, so a refusal's status goes there too."""
    ctx.response.status_code = response.status_code
    return response


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
        # torch, onnx and bentoml leave ~175,000 objects that live as long as the worker; a full collection walked
        # them all (~70 ms, a p99 of 100+ ms at any load). Frozen, collections walk what requests allocate.
        gc.collect()
        gc.freeze()
        self.watching = asyncio.get_running_loop().create_task(WATCHER.run())  # (kept: a task needs a holder)

    async def __is_ready__(self) -> bool:
        return REGISTRY.ready

    # The prediction routes, declared for BentoML's router and OpenAPI document. Every POST to them is answered by the
    # fast lane (http/fast_lane.py) before BentoML's dispatch; a method's body runs only where the service is mounted
    # without its middleware.

    @bentoml.api(route="/v1/models/{name}:predict", input_spec=V1Request, output_spec=V1Reply)
    async def v1_predict(self, ctx: bentoml.Context, instances: list) -> Response:
        """KServe v1 prediction: {"instances": [...]} -> {"predictions": [...]}."""
        return _answer(ctx, await handlers.v1_predict(REGISTRY, route_of(ctx.request.scope), instances))

    @bentoml.api(route="/v2/models/{name}/infer", input_spec=V2Request, output_spec=V2Reply)
    async def v2_infer(self, ctx: bentoml.Context, inputs: list, id: str | None = None, parameters: dict | None = None,
                       outputs: list | None = None) -> Response:
        """Open Inference Protocol (KServe v2) inference, with tensors as JSON or as binary data (Triton's
        extension: the JSON header's length in Inference-Header-Content-Length, then the bytes)."""
        return _answer(ctx, await handlers.v2_infer(REGISTRY, route_of(ctx.request.scope), inputs, id, parameters,
                                                    outputs, binary=None))


ModelServe.add_asgi_middleware(RequestLog, access=CONFIG.log_format == "json")
ModelServe.add_asgi_middleware(OpenApiDocument, service=ModelServe, metadata_routes=METADATA_APP.routes,
                               model_names=lambda: sorted(REGISTRY.models))
ModelServe.add_asgi_middleware(RequestGuard, api_key=CONFIG.api_key, max_body_bytes=CONFIG.max_body_bytes,
                               model_label=LABELS.model)
ModelServe.add_asgi_middleware(FastLane, registry=REGISTRY, request_models=REQUEST_MODELS)
