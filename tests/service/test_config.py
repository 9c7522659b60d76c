"""Service settings from the environment (pydantic-settings): defaults, parsing, and one error naming every bad
value by its variable."""

import os
import subprocess
import sys

import pytest

from service.config import DEFAULT_MODELS, ServeConfig
from tests.paths import REPO


def test_defaults_serve_the_three_models_with_onnx():
    config = ServeConfig.from_env({})
    assert config.models == DEFAULT_MODELS and config.backend == "onnx" and config.api_key is None


def test_environment_overrides_and_bare_names_mean_latest():
    config = ServeConfig.from_env({"MODELSERVE_MODELS": "mlp, transformer:abc", "MODELSERVE_MAX_BATCH_SIZE": "16",
                                   "MODELSERVE_BACKEND": "torchscript", "MODELSERVE_BATCHING": "false"})
    assert config.model_refs == ("mlp:latest", "transformer:abc")
    assert config.max_batch_size == 16 and config.backend == "torchscript" and config.batching is False


def test_the_process_environment_is_read_when_no_mapping_is_given(monkeypatch):
    monkeypatch.setenv("MODELSERVE_MODELS", "regression")
    monkeypatch.setenv("MODELSERVE_WORKERS", "3")
    monkeypatch.setenv("MODELSERVE_API_KEY", "")  # empty: unset
    config = ServeConfig.from_env()
    assert config.models == ("regression",) and config.workers == 3 and config.api_key is None


def test_every_bad_setting_is_named_at_once_and_an_api_key_is_never_echoed():
    with pytest.raises(ValueError) as excinfo:
        ServeConfig.from_env({"MODELSERVE_BACKEND": "tensorrt", "MODELSERVE_MAX_BATCH_SIZE": "1",
                              "MODELSERVE_API_KEY": "short-secret", "MODELSERVE_WORKERS": "two",
                              "MODELSERVE_TF32": "fast"})
    message = str(excinfo.value)
    for variable, value in [("BACKEND", "'tensorrt'"), ("MAX_BATCH_SIZE", "'1'"), ("WORKERS", "'two'"),
                            ("TF32", "'fast'")]:
        assert f"MODELSERVE_{variable}: " in message and f"got {value}" in message, message
    assert "MODELSERVE_API_KEY: String should have at least 16 characters" in message
    assert "short-secret" not in message


def test_a_version_policy_is_json_per_served_model_and_a_bad_one_is_named():
    config = ServeConfig.from_env({"MODELSERVE_VERSION_POLICY": '{"mlp": {"latest": 2, "weights": {"latest": 1}}}'})
    assert config.version_policies["mlp"].latest == 2 and config.version_policies["regression"].latest == 1
    pinned = ServeConfig.from_env({"MODELSERVE_MODELS": "mlp:abc"})
    assert pinned.version_policies["mlp"].versions == ("abc",)
    for policy, said in [('{"wide": {}}', "'wide', which is not served"), ('{"mlp": {"latest": 0}}', "LATEST"),
                         ("{not json", "MODELSERVE_VERSION_POLICY")]:
        with pytest.raises(ValueError, match="MODELSERVE_VERSION_POLICY") as excinfo:
            ServeConfig.from_env({"MODELSERVE_VERSION_POLICY": policy})
        assert said in str(excinfo.value)


def test_the_server_refuses_bad_settings_in_one_line_before_starting_workers(tmp_path):
    done = subprocess.run([sys.executable, "-m", "training.cli", "serve", "--port", "1", "--version-policy",
                           '{"mlp": {"latest": 0}}'], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "BENTOML_HOME": str(tmp_path)})
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip() == "modelserve serve: invalid modelserve settings: MODELSERVE_VERSION_POLICY.MLP." \
        "LATEST: Input should be greater than 0, got 0"
