"""`bentoml serve`, with a listening socket per worker and a metrics directory per server (service/upstream).

    python -m service.launcher serve service.app:ModelServe --host H --port P
"""

import sys

from bentoml_cli.cli import cli

from service import upstream

if __name__ == "__main__":
    upstream.install_in_launcher()
    sys.argv[0] = "bentoml"
    sys.exit(cli())
