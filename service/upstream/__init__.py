"""Every touch of BentoML's, uvicorn's and circus's private internals, and nothing else (a test holds every other
module to that), installed from here with a check of the BentoML releases it was tested with. Each change has a
test of its assumption in tests/service/test_upstream.py that fails loudly when a release breaks it."""

import logging

import bentoml

from service.upstream import app_factory, processes
from service.upstream.processes import REQUESTS  # noqa: F401 (the batcher's count of requests in flight)

TESTED_BENTOML = ("1.4.39", "1.4.40")


def _check_version() -> None:
    if bentoml.__version__ not in TESTED_BENTOML:
        logging.getLogger("modelserve").warning(
            "BentoML %s is not one service/upstream was tested with (%s); run tests/service/test_upstream.py",
            bentoml.__version__, ", ".join(TESTED_BENTOML))


def install_in_launcher() -> None:
    """In the server's main process, before BentoML starts its arbiter."""
    _check_version()
    processes.install_in_launcher()


def install_in_worker(tracing: bool, endpoint_of) -> None:
    """In each worker, as it imports the service: before BentoML builds the app and uvicorn starts."""
    _check_version()
    app_factory.install(tracing, endpoint_of)
    processes.count_requests_in_flight()
