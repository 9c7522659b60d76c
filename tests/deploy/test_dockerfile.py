"""The Dockerfile lints clean and everything it names exists in the repository."""

import re
import subprocess
import tomllib

from tests.conftest import REPO
from tests.deploy.conftest import tool

DOCKERFILE = (REPO / "Dockerfile").read_text()


def test_hadolint_passes():
    result = subprocess.run([tool("hadolint"), "--failure-threshold", "info", str(REPO / "Dockerfile")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_copied_sources_exist():
    for line in DOCKERFILE.splitlines():
        if line.startswith("COPY") and "--from=" not in line:
            sources = line.split()[1:-1]
            for source in sources:
                assert (REPO / source).exists(), f"COPY names {source}, which is not in the repository"


def test_entrypoint_is_the_projects_console_script_and_serves_on_3000():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert 'ENTRYPOINT ["modelserve", "serve"]' in DOCKERFILE and "modelserve" in scripts
    assert "EXPOSE 3000" in DOCKERFILE and '"--port", "3000"' in DOCKERFILE
    assert re.search(r"HEALTHCHECK .*\n.*127\.0\.0\.1:3000/livez", DOCKERFILE)


def test_runs_as_non_root_from_a_multi_stage_build():
    assert DOCKERFILE.count("FROM ${CUDA_IMAGE}") == 2 and "AS build" in DOCKERFILE
    final_stage = DOCKERFILE.split("\nFROM ${CUDA_IMAGE}\n")[1]
    assert "USER 10001:10001" in final_stage
    assert "pip install" not in final_stage and "gcc" not in final_stage


def test_base_image_matches_the_pinned_cuda_builds():
    constraints = (REPO / "constraints.txt").read_text()
    assert "torch==2.13.0" in constraints and "onnxruntime-gpu==1.31.1" in constraints
    # both wheels are CUDA 13 + cuDNN 9 builds (see the Dockerfile's comment)
    assert re.search(r"ARG CUDA_IMAGE=nvidia/cuda:13\.0\.\d+-cudnn-runtime-ubuntu24\.04", DOCKERFILE)
