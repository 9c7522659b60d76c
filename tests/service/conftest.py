"""The service tests use the real-server fixtures of tests/conftest.py (shared with the deploy tests)."""
