"""Service settings from the environment: defaults, parsing, and one error naming every bad value."""

import pytest

from service.config import DEFAULT_MODELS, ServeConfig


def test_defaults_serve_the_three_models_with_onnx():
    config = ServeConfig.from_env({})
    assert config.models == DEFAULT_MODELS and config.backend == "onnx" and config.api_key is None


def test_environment_overrides_and_bare_names_mean_latest():
    config = ServeConfig.from_env({"MODELSERVE_MODELS": "mlp, transformer:abc", "MODELSERVE_MAX_BATCH_SIZE": "16",
                                   "MODELSERVE_BACKEND": "torchscript"})
    assert config.model_refs == ("mlp:latest", "transformer:abc")
    assert config.max_batch_size == 16 and config.backend == "torchscript"


def test_every_bad_setting_is_named_at_once():
    with pytest.raises(ValueError) as excinfo:
        ServeConfig.from_env({"MODELSERVE_BACKEND": "tensorrt", "MODELSERVE_MAX_BATCH_SIZE": "1",
                              "MODELSERVE_API_KEY": "short"})
    message = str(excinfo.value)
    assert "backend must be onnx or torchscript" in message and "max_batch_size must be >= 2" in message
    assert "api_key must be at least 16 characters" in message


def test_non_integer_is_named():
    with pytest.raises(ValueError, match="MODELSERVE_WORKERS must be an integer, got 'two'"):
        ServeConfig.from_env({"MODELSERVE_WORKERS": "two"})


def test_batching_switch():
    assert ServeConfig.from_env({}).batching is True
    assert ServeConfig.from_env({"MODELSERVE_BATCHING": "false"}).batching is False
    with pytest.raises(ValueError, match="MODELSERVE_BATCHING must be true or false, got 'maybe'"):
        ServeConfig.from_env({"MODELSERVE_BATCHING": "maybe"})


def test_tf32_switch_defaults_to_the_cuda_providers_own_choice():
    assert ServeConfig.from_env({}).tf32 is True
    assert ServeConfig.from_env({"MODELSERVE_TF32": "false"}).tf32 is False
    with pytest.raises(ValueError, match="MODELSERVE_TF32 must be true or false, got 'fast'"):
        ServeConfig.from_env({"MODELSERVE_TF32": "fast"})
