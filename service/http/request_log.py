"""Where a request enters the service it gets an id; where it leaves, a log line.

`X-Request-Id` is the client's (when it is a sane token) or a fresh one, goes back on every response, refusals
included, and is on every log record written while the request runs. With MODELSERVE_LOG_FORMAT=json each record
is one JSON object per line, and each request gets an access line (`modelserve.access`: route, model, version,
status, duration). Request headers are never logged, so neither is an API key.
"""

import contextvars
import itertools
import logging
import os
import re
import sys
import time

from pythonjsonlogger.json import JsonFormatter

from service.protocol.openapi import json_router_error
from service.protocol.routes import VERSION_HEADER, route_of

HEADER = b"x-request-id"
VERSION = VERSION_HEADER.lower().encode()
REQUEST_ID = contextvars.ContextVar("request_id", default=None)
_SANE_ID = re.compile(rb"^[A-Za-z0-9._:/+=-]{1,128}$")  # what may be echoed into a header and a log line as is
access_log = logging.getLogger("modelserve.access")
_ID_PREFIX = os.urandom(8).hex()  # per worker process: ids stay unique across workers and restarts
_ID_COUNTER = itertools.count()


def new_request_id() -> str:
    """A fresh id: this worker's random prefix and a counter (a uuid4 cost 2-3 us a request, this a tenth)."""
    return f"{_ID_PREFIX}-{next(_ID_COUNTER)}"


class RequestIdFilter(logging.Filter):
    """Adds the running request's id (or None outside a request) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


def use_json_logs() -> None:
    """Every handler of the root and bentoml loggers (BentoML's console handlers, set up before the service module
    is imported in a worker) writes JSON lines; the modelserve loggers get such a handler of their own."""
    formatter = JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
                              rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                              timestamp=False)
    handler = logging.StreamHandler(sys.stderr)
    modelserve = logging.getLogger("modelserve")
    modelserve.handlers, modelserve.propagate = [handler], False
    for logger in (logging.getLogger(), logging.getLogger("bentoml"), modelserve):
        for each in logger.handlers:
            each.setFormatter(formatter)
            each.addFilter(RequestIdFilter())
    access_log.setLevel(logging.INFO)


class RequestLog:
    """ASGI middleware, the outermost of the service's own: the request id in and out, the access line, and the
    router's plain-text 404 and 405 turned into the JSON error every other refusal has (openapi.py)."""

    def __init__(self, app, access: bool) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        given = next((value for key, value in scope["headers"] if key == HEADER), None)
        request_id = given.decode() if given is not None and _SANE_ID.match(given) else new_request_id()
        token = REQUEST_ID.set(request_id)
        started, status, replaced, version = time.perf_counter(), 500, False, None

        async def send_with_id(message):
            nonlocal status, replaced, version
            if message["type"] == "http.response.start":
                status = message["status"]
                version = next((v.decode() for k, v in message.get("headers", ()) if k.lower() == VERSION), None)
                if status in (404, 405):
                    replaced = await json_router_error(scope, message, send, (HEADER, request_id.encode()))
                    if replaced:
                        return
                message["headers"] = [*message.get("headers", ()), (HEADER, request_id.encode())]
            elif replaced:
                return  # (the plain-text body of a replaced router error)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if self.access:
                self._log(scope, status, version, time.perf_counter() - started)
            REQUEST_ID.reset(token)

    def _log(self, scope, status: int, version: str | None, seconds: float) -> None:
        """`version`: the one that answered (its X-Model-Version reply header), or None."""
        route = route_of(scope)  # (left by the guard, inside)
        model = route.model if route else None
        access_log.info("%s %s %d", scope["method"], scope["path"], status,
                        extra={"model": model, "version": version, "status": status,
                               "duration_ms": round(seconds * 1000, 3)})
