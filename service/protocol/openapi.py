"""The OpenAPI 3.1 document at /docs.json: every route the service answers, generated from the code.

BentoML's `openapi_spec` describes the APIs from their request and reply models; this adds the `{name}` path
parameter, the versioned OIP route, every status a route returns with the error body, and the routes of
metadata.py (from its route table, described by each endpoint's docstring). 3.1, because its schema objects are
JSON Schema 2020-12, which pydantic writes (`"type": "null"`, `examples` lists).
"""

import copy
import re

import orjson
from starlette.routing import Route

ERROR_BODY = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "string", "description": "what is wrong and where (instance, feature, token, input)"}}}
STATUS_MEANINGS = {
    400: "The request is malformed or holds a bad value; the message names the instance and field",
    401: "The API key is missing or wrong (only where MODELSERVE_API_KEY is set)",
    404: "No such model, or no such version of it, is served here",
    413: "The request body is over MODELSERVE_MAX_BODY_BYTES",
    422: "The model's answer to this input is not finite",
    429: "The model's queue is full (MODELSERVE_MAX_QUEUE); retry after Retry-After seconds",
    503: "Not ready yet, or overloaded past MODELSERVE_MAX_LATENCY_MS; retry after Retry-After seconds",
    504: "The request's OIP timeout parameter cannot be met, or passed while it waited",
}
PREDICTION_STATUSES = (400, 401, 404, 413, 422, 429, 503, 504)
MODEL_ROUTE_STATUSES = (404, 503)
VERSIONED = {"/v1/models/{name}:predict": "/v1/models/{name}/versions/{version}:predict",
             "/v2/models/{name}/infer": "/v2/models/{name}/versions/{version}/infer"}
"""Each prediction route, and the same route naming a version (http/guard.py serves both through one API)."""
_PARAMETER = re.compile(r"{(\w+)}")


def _errors(statuses) -> dict:
    return {str(status): {"description": STATUS_MEANINGS[status], "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}} for status in statuses}


def _path_parameters(path: str, model_names: list[str]) -> list[dict]:
    """Each `{...}` of the path; a model name's examples are the models served here."""
    return [{"name": name, "in": "path", "required": True,
             "schema": {"type": "string", **({"examples": model_names} if name == "name" and model_names else {})},
             "description": "the model's name in the store" if name == "name" else "a version of that model"}
            for name in _PARAMETER.findall(path)]


def _prediction_operation(operation: dict, path: str, model_names: list[str]) -> dict:
    operation = copy.deepcopy(operation)
    operation["parameters"] = _path_parameters(path, model_names)
    ok = operation["responses"].get(200, operation["responses"].get("200"))
    operation["responses"] = {"200": ok, **_errors(PREDICTION_STATUSES)}
    if "{version}" in path:
        operation["operationId"] += "_version"
    return operation


def _metadata_operation(route: Route, model_names: list[str]) -> dict:
    summary, _, description = (route.endpoint.__doc__ or route.name).strip().partition("\n")
    statuses = (400, 401, 404) if route.path.startswith("/v2/repository/models/") else (401,) \
        if route.path.startswith("/v2/repository/") else MODEL_ROUTE_STATUSES if "{name}" in route.path \
        else (503,) if route.path.endswith("/ready") else ()
    operation_id = route.name + ("_version" if "{version}" in route.path else "")  # (one endpoint, two routes)
    return {"summary": summary.strip(), "description": description.strip(), "operationId": operation_id,
            "tags": ["Model metadata and health"], "parameters": _path_parameters(route.path, model_names),
            "responses": {"200": {"description": "OK", "content": {"application/json": {
                "schema": {"type": "object"}}}}, **_errors(statuses)}}


def build_document(bentoml_document: dict, metadata_routes: list[Route], model_names: list[str]) -> dict:
    """BentoML's document for this service, completed (see the module docstring)."""
    document = copy.deepcopy(bentoml_document)
    document["openapi"] = "3.1.0"
    paths = document["paths"]
    for path in [p for p in paths if "{name}" in p]:  # (the prediction APIs: BentoML names them by route)
        bentoml_operations = paths[path].items()
        paths[path] = {method: _prediction_operation(operation, path, model_names)
                       for method, operation in bentoml_operations}
        if path in VERSIONED:
            paths[VERSIONED[path]] = {method: _prediction_operation(operation, VERSIONED[path], model_names)
                                      for method, operation in bentoml_operations}
    for route in metadata_routes:
        paths.setdefault(route.path, {})
        for method in sorted(route.methods - {"HEAD"}):
            paths[route.path][method.lower()] = _metadata_operation(route, model_names)
    document.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_BODY
    return document


class OpenApiDocument:
    """ASGI middleware answering GET /docs.json with the completed document, built once per worker on first use
    (BentoML's own route would serve the incomplete one)."""

    def __init__(self, app, service, metadata_routes: list[Route], model_names) -> None:
        self.app = app
        self.service = service
        self.metadata_routes = metadata_routes
        self.model_names = model_names  # () -> the names served, once loaded
        self._body: bytes | None = None

    async def __call__(self, scope, receive, send):
        if scope.get("path") != "/docs.json" or scope["method"] != "GET":
            return await self.app(scope, receive, send)
        if self._body is None:
            self._body = orjson.dumps(build_document(self.service.openapi_spec.asdict(), self.metadata_routes,
                                                     self.model_names()))
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(self._body)).encode())]})
        await send({"type": "http.response.body", "body": self._body})


async def json_router_error(scope, start: dict, send, *extra_headers) -> bool:
    """Send a JSON body in place of a router's plain-text 404 (no route matches) or 405 (a route does not take the
    method), as the document promises for every refusal; False, sending nothing, where the response is JSON
    already (the service's own 404s)."""
    headers = start.get("headers", ())
    if dict(headers).get(b"content-type", b"").startswith(b"application/json"):
        return False
    what = "no route" if start["status"] == 404 else f"method {scope['method']} is not allowed"
    body = orjson.dumps({"error": f"{what} for {scope['path']!r}; the routes are listed at /docs.json"})
    kept = [(k, v) for k, v in headers if k not in (b"content-type", b"content-length")]
    await send({**start, "headers": [*kept, *extra_headers, (b"content-type", b"application/json"),
                                     (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
    return True
