"""A worker ends when the server's main process dies, rather than serve on alone.

Each worker has its own SO_REUSEPORT socket, so a worker orphaned by a SIGKILLed main process went on answering on
the port, sharing connections with the next server started there while running the old code. Linux sends a process
a signal when its parent dies: each worker asks for SIGTERM, and drains and exits as on any shutdown. (Not in the
main process: there it would stop a server whose launching shell exits.)"""

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
