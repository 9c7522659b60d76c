"""The service runs as the Kubernetes manifests promise: its code and its model store read-only, and only BentoML's
home (an emptyDir there) and the temp directory writable."""

import shlex
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.paths import REPO, SESSION_HOME
from tests.servers import Server


def mount_namespaces_work() -> bool:
    try:
        return subprocess.run(["unshare", "-m", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.skipif(not mount_namespaces_work(), reason="needs mount namespaces (unshare -m, as root)")
def test_service_serves_with_code_and_store_read_only(trained, tmp_path):
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    (home / "models").mkdir(parents=True)
    tmp.mkdir()
    read_only = {REPO: REPO, Path(sys.base_prefix): Path(sys.base_prefix), SESSION_HOME / "models": home / "models"}

    def in_namespace(command: list[str]) -> list[str]:
        """The server inside a mount namespace of its own where the checkout (code and virtual environment), the
        Python installation and the store (mounted into BentoML's home, as the manifests do) are read-only."""
        mounts = " && ".join(f"mount --bind {shlex.quote(str(source))} {shlex.quote(str(target))} && "
                             f"mount -o remount,bind,ro {shlex.quote(str(target))}"
                             for source, target in read_only.items())
        probe = f"! touch {shlex.quote(str(REPO / 'write-probe'))} 2>/dev/null"  # the code is not writable
        return ["unshare", "-m", "--propagation", "private", "sh", "-c",
                f"{mounts} && {probe} && TMPDIR={shlex.quote(str(tmp))} exec {shlex.join(command)}"]

    server = Server(tmp_path / "server.log", home=home, wrap=in_namespace, models="regression,transformer",
                    workers=2)
    try:
        server.wait_until("/readyz")
        reply = httpx.post(f"{server.url}/v1/models/transformer:predict", json={"instances": ["xqazzbk"]})
        assert reply.status_code == 200, reply.text
        assert httpx.post(f"{server.url}/v1/models/regression:predict", json={"instances": [[100, 10]]}).is_success
        assert "Read-only file system" not in server.log()
        assert "modelserve_model_ready" in httpx.get(f"{server.url}/metrics").text  # metrics files in the home
    finally:
        server.stop()
    assert not (REPO / "write-probe").exists()
