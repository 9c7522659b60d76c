"""Model architectures, each beside its config dataclass, and the registry that builds them.

The tokenizer is pure Python and imports eagerly. Everything else needs torch and is imported on
first use (PEP 562), so a process that only tokenizes, such as the service on its ONNX backend,
never loads torch (about 350 MB per worker).
"""

import importlib

from models.tokenizer import ByteTokenizer

TASKS = ("regression", "binary", "multiclass")
"""What a model can be trained to predict; a head is built for one of them."""

_LAZY = {
    "REGISTRY": "models.registry", "DEFAULT_MODELS": "models.registry", "build_model": "models.registry",
    "make_config": "models.registry", "input_kind": "models.registry", "config_to_dict": "models.registry",
    "LinearRegression": "models.regression", "RegressionConfig": "models.regression",
    "MLP": "models.mlp", "MLPConfig": "models.mlp",
    "TransformerClassifier": "models.transformer", "TransformerConfig": "models.transformer",
    "BagOfTokens": "models.bag_of_tokens", "BagOfTokensConfig": "models.bag_of_tokens",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'models' has no attribute {name!r}")


__all__ = ["TASKS", "ByteTokenizer", *_LAZY]
