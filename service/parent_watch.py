"""A worker ends when the process that started it dies, rather than serve on alone.

Each worker listens on its own socket with SO_REUSEPORT (launcher.py). If the server's main process is
killed outright (SIGKILL, or the OOM killer), circus never stops its workers: measured, the worker went on
answering on the port with no supervisor, and a server started again on that port would share its
connections with the orphan, which runs the old code and models and is missing from the new server's
metrics. Linux can send a process a signal when its parent dies; each worker asks for SIGTERM, and so drains
and exits as on any shutdown. Set in the worker only: in the main process it would stop a server whose
launching shell exits (nohup, a daemon)."""

import ctypes
import logging
import os
import signal

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

log = logging.getLogger("modelserve")


def end_with_parent() -> bool:
    """Ask the kernel for SIGTERM when this process's parent dies; False where that is not available."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    except (OSError, AttributeError) as exc:  # (not Linux)
        log.warning("workers will not end with the server's main process: %s", exc)
        return False
    if os.getppid() == 1:  # the parent died before the request: no signal will come
        os.kill(os.getpid(), signal.SIGTERM)
    return True
