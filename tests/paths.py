"""Where the test session's files go. Imported first by conftest: it points BentoML at a temporary home."""

import os
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# BentoML resolves its store once per process, so this must happen before anything imports bentoml.
SESSION_HOME = Path(tempfile.mkdtemp(prefix="modelserve-test-bentoml-"))
os.environ["BENTOML_HOME"] = str(SESSION_HOME)
SESSION_TMP = SESSION_HOME / "tmp"
"""TMPDIR for the jobs the tests start: what a killed job leaves there goes when the session ends."""
SESSION_TMP.mkdir()
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
