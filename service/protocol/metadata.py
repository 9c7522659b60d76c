"""The GET routes: model metadata (v1 and v2) and the Open Inference Protocol health endpoints."""

from collections.abc import Callable

import anyio
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.errors import InvalidInput, RequestError
from service.lifecycle import repository
from service.protocol import triton, v1, v2
from service.protocol.binary import EXTENSION as BINARY_TENSOR_DATA
from service.protocol.handlers import refusal
from service.runtime.registry import ModelRegistry


async def _repository_call(request: Request, call) -> Response:
    """Run a repository action on the request's optional JSON body: {} once done, or the refusal."""
    raw = await request.body()
    try:
        body = orjson.loads(raw) if raw.strip() else {}
        await call(body)
    except orjson.JSONDecodeError:
        return refusal(InvalidInput("the body must be JSON (or empty)"))
    except RequestError as error:
        return refusal(error)
    return JSONResponse({})


def build_metadata_app(registry: ModelRegistry, server_version: str, watcher: Callable[[], object]) -> Starlette:
    """`watcher`: () -> the worker's StoreWatcher, or None where the store is not watched."""
    def model_or_refusal(request: Request):
        try:
            return registry.get(request.path_params["name"], request.path_params.get("version")), None
        except RequestError as error:
            return None, refusal(error)

    async def v1_model(request: Request) -> Response:
        """KServe v1 model metadata
        Tag, version, backend, device, task, each column's kind and vocabulary, input and output schema, validation
        metrics; every version served with its state and its share of the traffic and of the shadow copies."""
        model, refused = model_or_refusal(request)
        return refused or JSONResponse(v1.model_metadata(model, registry.models[model.name]))

    async def v2_server(_: Request) -> Response:
        """OIP server metadata
        Name, version and the protocol extensions served (binary tensor data, model repository, Triton's model
        configuration and statistics)."""
        return JSONResponse({"name": "modelserve", "version": server_version,
                             "extensions": [BINARY_TENSOR_DATA, repository.EXTENSION, *triton.EXTENSIONS]})

    async def v2_live(_: Request) -> Response:
        """OIP server liveness"""
        return JSONResponse({"live": True})

    async def v2_ready(_: Request) -> Response:
        """OIP server readiness
        200 once every configured model is loaded and warmed up, 503 before."""
        ready = registry.ready
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    async def v2_model(request: Request) -> Response:
        """OIP model metadata
        The inputs a client sends (a tabular model with categories: one tensor per column), the outputs, the
        versions served."""
        model, refused = model_or_refusal(request)
        return refused or JSONResponse(v2.model_metadata(model, registry.models[model.name]))

    async def v2_model_config(request: Request) -> Response:
        """Triton model configuration
        The model in Triton's terms (platform, batch limit, inputs and outputs without the batch dimension, version
        policy), for Triton's tools such as perf_analyzer."""
        model, refused = model_or_refusal(request)
        return refused or JSONResponse(triton.model_config(model, registry.models[model.name],
                                                           registry.config.max_batch_size, registry.config.max_queue))

    async def v2_model_stats(request: Request) -> Response:
        """Triton model statistics
        Per served version, summed over the workers: requests answered, rows and engine calls, queue and engine
        time."""
        model, refused = model_or_refusal(request)
        return refused or JSONResponse(await anyio.to_thread.run_sync(triton.model_stats, registry.models[model.name]))

    async def v2_model_ready(request: Request) -> Response:
        """OIP model readiness"""
        model, refused = model_or_refusal(request)
        return refused or JSONResponse({"name": model.name, "ready": True})

    async def v2_repository_index(_: Request) -> Response:
        """OIP model repository index
        Every model and version in the store with its state in the worker that answers: READY, LOADING, or
        UNAVAILABLE with the reason (a failed checksum, not the version served, not configured)."""
        return JSONResponse(await anyio.to_thread.run_sync(repository.index, registry, watcher()))

    async def v2_repository_load(request: Request) -> Response:
        """OIP model repository: load a model
        Serves the latest version, or the one in `{"parameters": {"version": ...}}`, once verified and warmed up; in
        the worker that answers at once, in the server's other workers within the watch interval."""
        return await _repository_call(request, lambda body: repository.load(
            registry, watcher(), request.path_params["name"], body))

    async def v2_repository_unload(request: Request) -> Response:
        """OIP model repository: unload a model
        Its predictions answer 404 until it is loaded again; readiness no longer waits for it."""
        return await _repository_call(request, lambda body: repository.unload(
            registry, watcher(), request.path_params["name"]))

    return Starlette(routes=[
        Route("/v2/repository/index", v2_repository_index, methods=["POST"]),
        Route("/v2/repository/models/{name}/load", v2_repository_load, methods=["POST"]),
        Route("/v2/repository/models/{name}/unload", v2_repository_unload, methods=["POST"]),
        Route("/v1/models/{name}", v1_model, methods=["GET"]),
        Route("/v1/models/{name}/versions/{version}", v1_model, methods=["GET"]),
        Route("/v2", v2_server, methods=["GET"]),
        Route("/v2/health/live", v2_live, methods=["GET"]),
        Route("/v2/health/ready", v2_ready, methods=["GET"]),
        Route("/v2/models/{name}", v2_model, methods=["GET"]),
        Route("/v2/models/{name}/versions/{version}", v2_model, methods=["GET"]),
        Route("/v2/models/{name}/ready", v2_model_ready, methods=["GET"]),
        Route("/v2/models/{name}/config", v2_model_config, methods=["GET"]),
        Route("/v2/models/{name}/stats", v2_model_stats, methods=["GET"]),
        Route("/v2/models/{name}/versions/{version}/ready", v2_model_ready, methods=["GET"]),
    ])
