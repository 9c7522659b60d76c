"""Every touch of BentoML's, uvicorn's and circus's private internals, and nothing else (a test holds every other
module to that). Installed from here alone, with a check of the BentoML release it was tested against; the tests
in tests/service/test_upstream.py each check one assumption and fail loudly when a release breaks it."""

import logging

import bentoml

from service.upstream import app_factory, processes
from service.upstream.processes import REQUESTS

TESTED_BENTOML = ("1.4.39", "1.4.40")
log = logging.getLogger("modelserve")

__all__ = ["REQUESTS", "adapt_service", "install_in_launcher", "install_in_worker", "TESTED_BENTOML"]


def _check_version() -> None:
    if bentoml.__version__ not in TESTED_BENTOML:
        log.warning("BentoML %s is not one of those service/upstream was tested with (%s); run "
                    "tests/service/test_upstream.py before serving with it", bentoml.__version__,
                    ", ".join(TESTED_BENTOML))


def install_in_launcher() -> None:
    """In the server's main process, before BentoML starts its arbiter."""
    _check_version()
    processes.install_in_launcher()


def install_in_worker(tracing: bool, endpoint_of) -> None:
    """In each worker, when it imports the service: before BentoML builds the app and starts uvicorn."""
    _check_version()
    app_factory.install(tracing, endpoint_of)
    processes.count_requests_in_flight()


adapt_service = app_factory.adapt_service
