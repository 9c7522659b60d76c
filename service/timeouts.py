"""BentoML's per-request timeout, without the timer it leaves behind.

BentoML 1.4's TimeoutMiddleware schedules `loop.call_later(timeout, ...)` for every request and
never cancels it, so each request leaves a timer, a future and their context alive for the whole
timeout (60 s here). At 1,500 requests/s per worker that is ~90,000 timers, ~500,000 objects, which
every full garbage collection walks: the pauses grew from 3 ms to over 50 ms within 10 s of load and
were most of this service's p99. This subclass keeps the behaviour (a 504 JSON answer when no
response has started within the timeout), cancels the timer once the request is done, and stops waiting
for a response when the app has finished without one.
`install()` swaps it in before BentoML builds the app; BentoML imports the class at that moment.
"""

import asyncio

from bentoml._internal.server.http import traffic
from starlette.responses import JSONResponse

BENTOML_TIMEOUT_MIDDLEWARE = traffic.TimeoutMiddleware


class TimeoutMiddleware(BENTOML_TIMEOUT_MIDDLEWARE):
    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        loop = asyncio.get_running_loop()
        started = loop.create_future()  # done once the response starts (or the timeout passes)
        timer = loop.call_later(self.timeout, self._set_timer_out, started)

        async def mark_started(message) -> None:
            if not started.done():
                started.set_result(None)
            await send(message)

        task = asyncio.ensure_future(self.app(scope, receive, mark_started))
        # The app can also finish without starting a response: its client left mid-body, or it raised. Waiting
        # for the response alone then held such a request, and with it the worker's graceful shutdown (uvicorn
        # waits for every request task), for the whole timeout, and kept a raised error from the error handler.
        task.add_done_callback(lambda _: started.done() or started.set_result(None))
        try:
            await started
        except asyncio.TimeoutError:
            if task.cancel():
                await JSONResponse({"error": f"Not able to process the request in {self.timeout} seconds"},
                                   status_code=504)(scope, receive, send)
            return
        finally:
            timer.cancel()
        await task


def install() -> None:
    traffic.TimeoutMiddleware = TimeoutMiddleware
