"""How many HTTP requests this worker has begun and not yet answered, as uvicorn counts them.

uvicorn starts a task for each request the moment its headers are parsed and keeps the set of those tasks
(`ServerState.tasks`, which it waits for at shutdown). That set is the one count that includes requests
which have arrived but not yet run: under load, several requests are parsed in one event-loop turn and
their tasks then run one after another, so a count kept by middleware sees each of them alone (tried:
300 requests at concurrency 64 went to the engine as 300 calls). The batcher reads the count to send a
request that is alone in its worker straight to the engine, past the batching queue (batching.py).
"""

from typing import Any

import uvicorn.server


class InFlight:
    __slots__ = ("tasks",)

    def __init__(self) -> None:
        self.tasks: set[Any] | None = None
        """uvicorn's set of request tasks in this worker; None until uvicorn starts (or where it is not used)."""

    def alone(self) -> bool:
        """True when the request asking is the only one this worker has begun; False when unsure."""
        return self.tasks is not None and len(self.tasks) == 1


REQUESTS = InFlight()


def install() -> None:
    """Keep hold of the request-task set of the uvicorn server this worker starts (BentoML creates it after
    importing the service)."""
    server_state = uvicorn.server.ServerState
    if getattr(server_state.__init__, "modelserve_counted", False):
        return
    uvicorn_init = server_state.__init__

    def __init__(self) -> None:
        uvicorn_init(self)
        REQUESTS.tasks = self.tasks

    __init__.modelserve_counted = True
    server_state.__init__ = __init__
