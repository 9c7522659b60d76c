"""`bentoml serve`, with a listening socket per worker and a metrics directory per server (service/upstream).

    python -m service.launcher serve service.app:ModelServe --host H --port P
"""

import atexit
import os
import sys

from bentoml_cli.cli import cli

from service import upstream
from service.config import ServeConfig
from service.lifecycle.desired import server_file

if __name__ == "__main__":
    try:  # (each worker reads them again; a bad one is said here once, not as a traceback per worker)
        ServeConfig.from_env()
    except ValueError as error:
        sys.exit(f"modelserve serve: {error}")
    upstream.install_in_launcher()
    wishes = server_file(os.getpid())  # the repository API's loads and unloads, for this server's workers alone
    wishes.unlink(missing_ok=True)
    atexit.register(wishes.unlink, missing_ok=True)
    sys.argv[0] = "bentoml"
    sys.exit(cli())
