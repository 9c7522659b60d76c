"""The registry of architectures and the one factory that builds them."""

from dataclasses import asdict
from typing import Any

from torch import nn

from models.bag_of_tokens import BagOfTokens, BagOfTokensConfig
from models.mlp import MLP, MLPConfig
from models.regression import LinearRegression, RegressionConfig
from models.transformer import TransformerClassifier, TransformerConfig

# name -> (config class, module class, input kind). "features" take float rows (B, F);
# "tokens" take int64 ids (B, L) padded with 0.
REGISTRY: dict[str, tuple[type, type[nn.Module], str]] = {
    "regression": (RegressionConfig, LinearRegression, "features"),
    "mlp": (MLPConfig, MLP, "features"),
    "transformer": (TransformerConfig, TransformerClassifier, "tokens"),
    "bag_of_tokens": (BagOfTokensConfig, BagOfTokens, "tokens"),
}

# The three models `make run` trains and the service serves; bag_of_tokens is a baseline.
DEFAULT_MODELS = ("regression", "mlp", "transformer")


def _entry(name: str) -> tuple[type, type[nn.Module], str]:
    if name not in REGISTRY:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(REGISTRY)}")
    return REGISTRY[name]


def make_config(name: str, values: dict[str, Any]) -> Any:
    """Build the config dataclass of model `name` from plain values (as stored in a checkpoint)."""
    config_cls = _entry(name)[0]
    known = set(config_cls.__dataclass_fields__)
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {config_cls.__name__} fields {unknown}; known fields are {sorted(known)}")
    return config_cls(**values)


def build_model(name: str, config: Any) -> nn.Module:
    """Build model `name` from its config dataclass."""
    config_cls, module_cls, _ = _entry(name)
    if not isinstance(config, config_cls):
        raise TypeError(f"model {name!r} needs a {config_cls.__name__}, got {type(config).__name__}")
    return module_cls(config)


def input_kind(name: str) -> str:
    """'features' for float feature rows, 'tokens' for token-id sequences."""
    return _entry(name)[2]


def config_to_dict(config: Any) -> dict[str, Any]:
    values = asdict(config)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}

