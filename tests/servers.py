"""Real servers for tests: `modelserve serve` (bentoml serve) in a subprocess on a free port."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.paths import REPO, SESSION_HOME

API_KEY = "test-key-0123456789abcdef"
PORT_RETRIES = 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One `modelserve serve` process; `url` once started, logs in `log_path`."""

    def __init__(self, log_path: Path, store: Path = SESSION_HOME / "models", home: Path | None = None,
                 wrap=None, **settings: str) -> None:
        # A BENTOML_HOME of its own unless given one, with the shared model store linked in.
        if home is None:
            home = log_path.parent / "bentoml_home"
        if not home.exists():
            home.mkdir()
            (home / "models").symlink_to(store)
        self.log_path = log_path
        python_path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))  # keep the caller's
        self._env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true", "PYTHONPATH": python_path}
        self._env.update({f"MODELSERVE_{k.upper()}": str(v) for k, v in settings.items()})
        self._log = open(log_path, "w")
        self._port_retries = PORT_RETRIES
        self._wrap = wrap or (lambda command: command)  # e.g. to run it inside a mount namespace
        self._spawn()

    def _spawn(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "training.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        self.process = subprocess.Popen(self._wrap(command), cwd=REPO, env=self._env, stdout=self._log,
                                        stderr=subprocess.STDOUT, start_new_session=True)

    def _lost_its_port(self) -> bool:
        """A port found free can be taken before the server binds it (another process's outgoing connection
        draws from the same range): one fresh CI run lost a test to that. Such a start is retried elsewhere."""
        if self._port_retries == 0 or f"Could not bind 127.0.0.1:{self.port}" not in self.log():
            return False
        self._port_retries -= 1
        try:
            os.killpg(self.process.pid, 9)  # anything of the failed start still alive
        except ProcessLookupError:
            pass
        self._log.write(f"--- port {self.port} was taken before the server bound it; starting again on another\n")
        self._spawn()
        return True

    def wait_until(self, path: str, status: int = 200, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None and not self._lost_its_port():
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()[-4000:]}")
            try:
                if httpx.get(self.url + path, timeout=2).status_code == status:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise TimeoutError(f"{self.url}{path} did not answer {status} within {timeout}s:\n{self.log()[-4000:]}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
        self._log.close()


def start(tmp_path_factory, name: str, **settings) -> Server:
    server = Server(tmp_path_factory.mktemp(name) / "server.log", **settings)
    try:
        server.wait_until("/readyz")
    except Exception:
        server.stop()
        raise
    return server
