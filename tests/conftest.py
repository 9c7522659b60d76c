"""Shared fixtures. The whole session writes to a temporary BentoML home, never the user's store."""

import json  # noqa: E402
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest  # noqa: E402
import torch  # noqa: E402

from tests.paths import REPO, SESSION_HOME, SESSION_TMP  # first: it points BentoML at the session's home
from tests.servers import API_KEY, Server, start  # noqa: E402

DEFAULT_MODELS = ("regression", "mlp", "transformer")


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(SESSION_HOME, ignore_errors=True)  # the session's store, servers' files and jobs' temp files


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device; torch sees none on this machine")
    for item in items:
        if item.get_closest_marker("gpu"):  # the marker, not the keyword: a test id may contain "gpu"
            item.add_marker(skip)


def store_snapshot(home: Path = SESSION_HOME) -> dict[str, int]:
    """Every file under the model store with its size: equal snapshots mean an untouched store."""
    root = home / "models"
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()} if root.exists() else {}


def copy_store(home: Path) -> None:
    """The session's trained default models, their latest versions, into the store at `home`."""
    for name in DEFAULT_MODELS:
        source = SESSION_HOME / "models" / name
        version = (source / "latest").read_text().strip()
        shutil.copytree(source / version, home / "models" / name / version)
        (home / "models" / name / "latest").write_text(version)


def run_modelserve(*args: str, home: Path, cwd: Path, timeout: float = 300, env: dict | None = None,
                   launcher: list[str] | None = None) -> subprocess.CompletedProcess:
    """Run the real console entry point in a fresh process with its own BentoML home."""
    full_env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true", "TMPDIR": str(SESSION_TMP),
                **(env or {})}
    command = (launcher or [sys.executable, "-m", "training.cli"]) + list(args)
    return subprocess.run(command, cwd=cwd, env={**full_env, "PYTHONPATH": str(REPO)}, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> dict[str, dict]:
    """The three default models trained once with their default recipes into the session store.

    Returns name -> {"tag", "path" (model directory), "manifest"}.
    """
    from training.cli import main
    from training.store import list_models

    run_root = tmp_path_factory.mktemp("runs")
    for name in DEFAULT_MODELS:
        assert main(["train", name, "--run-dir", str(run_root / name)]) == 0
    found = {}
    for model in list_models():
        if model.tag.name in DEFAULT_MODELS and model.tag.name not in found:
            path = Path(model.path)
            found[model.tag.name] = {"tag": str(model.tag), "path": path,
                                     "manifest": json.loads((path / "manifest.json").read_text())}
    assert set(found) == set(DEFAULT_MODELS)
    return found


# ---------------------------------------------------------------- real servers (tests/servers.py)

@pytest.fixture(scope="session")
def onnx_server(trained, tmp_path_factory):
    server = start(tmp_path_factory, "onnx", backend="onnx")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def torchscript_server(trained, tmp_path_factory):
    server = start(tmp_path_factory, "torchscript", backend="torchscript")
    yield server
    server.stop()


@pytest.fixture(params=["onnx", "torchscript"])
def server(request) -> Server:
    """Each endpoint test runs against both backends."""
    return request.getfixturevalue(f"{request.param}_server")


@pytest.fixture(scope="session")
def guarded_server(trained, tmp_path_factory):
    """Two workers and an API key: metrics must still add up across processes."""
    server = start(tmp_path_factory, "guarded", workers=2, api_key=API_KEY)
    yield server
    server.stop()
