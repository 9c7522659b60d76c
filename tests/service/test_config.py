"""Service settings from the environment (pydantic-settings): defaults, parsing, and one error naming every bad
value by its variable."""

import pytest

from service.config import DEFAULT_MODELS, ServeConfig


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
