"""The service tests use the server fixtures of tests/conftest.py (shared with the deploy tests)."""

from tests.servers import API_KEY, Server, start  # noqa: F401  (re-exported for the tests)
