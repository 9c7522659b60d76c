"""What the repository API asked for (load a version, load the latest, unload), shared by one server's workers.

A load or unload request reaches one worker; the others read the wish from a small JSON file named by the host
and the server's main process (their parent), at every watch tick, and follow within the interval.
"""

import json
import os
import socket
import tempfile
from pathlib import Path

from filelock import FileLock

UNLOADED = "unloaded"


def server_file(server_pid: int) -> Path:
    return Path(tempfile.gettempdir()) / f"modelserve-{socket.gethostname()}-{server_pid}-repository.json"


class DesiredState:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or server_file(os.getppid())
        self._lock = FileLock(f"{self.path}.lock")
        self._seen: tuple[int | None, dict[str, str]] = (None, {})  # (mtime, wishes): read again when it changes

    def read(self) -> dict[str, str]:
        """Model name -> UNLOADED, or the version policy to serve (as a dict)."""
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return {}
        if mtime != self._seen[0]:
            self._seen = (mtime, json.loads(self.path.read_text()))
        return self._seen[1]

    def set(self, name: str, wish: str | dict) -> None:
        with self._lock:
            wishes = json.loads(self.path.read_text()) if self.path.exists() else {}
            wishes[name] = wish
            written = self.path.with_suffix(".tmp")
            written.write_text(json.dumps(wishes))
            os.replace(written, self.path)  # readers see the old file or the new one, never half of one
