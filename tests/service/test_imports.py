"""The service on its ONNX backend never loads torch: it costs each worker about 350 MB."""

import subprocess
import sys

from tests.paths import REPO


def test_importing_the_service_does_not_import_torch():
    check = "import sys, service.app; sys.exit(1 if 'torch' in sys.modules else 0)"
    result = subprocess.run([sys.executable, "-c", check], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, "service.app imported torch" + result.stderr[-2000:]
