"""Where a prediction enters: the route matched once, the API key, the body size limit, and every refusal counted.
The model repository routes (lifecycle/repository.py) need the API key too.

It runs before BentoML parses the body, so an oversized body is refused without being read whole, and every
refused request (ours or BentoML's own 400s for malformed JSON) is counted by reason. The matched route goes into
the scope for the layers inside (protocol/routes.py), with the routing key that picks a version; a versioned path is
served by the unversioned route (one BentoML API per protocol), and the handler refuses a version not served.
"""

import hmac
import json
from collections.abc import Callable

from service import errors, metrics
from service.lifecycle.versions import ROUTING_KEY_HEADER
from service.protocol.routes import ROUTE_KEY, match_prediction

REASON_HEADER = errors.REASON_HEADER.encode()
ROUTING_KEY = ROUTING_KEY_HEADER.lower().encode()
REPOSITORY = "/v2/repository/"  # the model repository extension's routes: behind the API key as well
REASON_BY_STATUS = {400: "invalid_body", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
                    413: "body_too_large", 429: "queue_full", 500: "internal_error", 503: "unavailable"}


async def _reply(send, status: int, message: str, reason: str, extra_headers: list | None = None) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (REASON_HEADER, reason.encode()), *(extra_headers or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    def __init__(self, app, api_key: str | None, max_body_bytes: int, model_label: Callable[[str], str]) -> None:
        self.app = app
        self.model_label = model_label  # the path's model name, or one shared value where it is not served
        self.expected_auth = f"Bearer {api_key}".encode() if api_key else None
        self.max_body_bytes = max_body_bytes

    def _refuse_unauthorized(self, headers: dict) -> tuple | None:
        """(message, reason, headers) of the 401 for a request without the API key; None for one with it."""
        given = headers.get(b"authorization", b"")
        if hmac.compare_digest(given, self.expected_auth):
            return None
        why = "missing Authorization header" if not given else "wrong API key"
        return f"{why}: send 'Authorization: Bearer <API key>'", "unauthorized", [(b"www-authenticate", b"Bearer")]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        route = match_prediction(scope["path"], headers.get(ROUTING_KEY))
        if route is None:
            if self.expected_auth is not None and scope["path"].startswith(REPOSITORY):
                refusal = self._refuse_unauthorized(headers)
                if refusal is not None:
                    return await _reply(send, 401, *refusal)
            return await self.app(scope, receive, send)
        model = route.model
        scope[ROUTE_KEY] = route  # (in place: the request log, outside, reads it too)
        if route.version is not None:
            scope = {**scope, "path": route.unversioned_path}
        rejected = metrics.REJECTED_REQUESTS

        def reject(reason: str) -> None:
            rejected.labels(model=self.model_label(model), reason=reason).inc()

        refusal = self._refuse_unauthorized(headers) if self.expected_auth is not None else None
        if refusal is not None:
            reject("unauthorized")
            return await _reply(send, 401, *refusal)

        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            reject("body_too_large")
            return await _reply(send, 413, f"request body of {int(length)} bytes exceeds the limit of "
                                f"{self.max_body_bytes} bytes", "body_too_large")
        if length is None:  # chunked: read it here, within the limit, and replay it to the app
            chunks, size = [], 0
            while True:
                message = await receive()
                chunks.append(message)
                size += len(message.get("body", b""))
                if size > self.max_body_bytes:
                    reject("body_too_large")
                    return await _reply(send, 413, f"request body exceeds the limit of {self.max_body_bytes} bytes",
                                        "body_too_large")
                if not message.get("more_body", False):
                    break
            receive = replay(chunks, receive)

        async def observe(message):
            if message["type"] == "http.response.start" and message["status"] >= 400:
                reason = dict(message.get("headers", [])).get(REASON_HEADER)
                reject(reason.decode() if reason else REASON_BY_STATUS.get(message["status"], "other"))
            await send(message)

        await self.app(scope, receive, observe)


def replay(chunks: list, receive):
    """A receive that hands out already-read request messages first, then the client's own."""
    pending = list(chunks)

    async def replay():
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
