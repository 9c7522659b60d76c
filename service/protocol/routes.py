"""The routes a prediction can take and the shape of their bodies: one table for every layer that reads them.

The guard (http/guard.py) matches a prediction path once and leaves what it found in the ASGI scope (`route_of`);
the fast lane and the access log read it there. The bodies are defined once, as the models below: the API methods
declare them (BentoML's router and OpenAPI document) and the fast lane reads its checks from them.
"""

import re
import types
import typing
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

PREDICTION_PATH = re.compile(
    r"^/(?:v1/models/(?P<v1>[^/]+)(?:/versions/(?P<v1_version>[^/]+))?:predict"
    r"|v2/models/(?P<v2>[^/]+)(?:/versions/(?P<version>[^/]+))?/infer)$")
MODEL_PATH = re.compile(
    r"^/(?:v1/models/(?P<v1>[^/:]+)(?:/versions/(?P<v1_version>[^/:]+))?(?::predict)?"
    r"|v2/models/(?P<v2>[^/]+)(?:/versions/(?P<version>[^/]+))?(?:/infer|/ready|/config|/stats)?)$")
"""Every route under a model: v1 metadata and predict, v2 metadata, readiness and inference, each with or without
/versions/VERSION (the metric labels read it)."""
ROUTE_KEY = "modelserve.route"
VERSION_HEADER = "X-Model-Version"  # on every prediction reply: the version that answered


@dataclass(frozen=True, slots=True)
class PredictionRoute:
    protocol: str  # "v1" or "v2"
    model: str
    version: str | None  # from a versioned path, which the unversioned route serves (http/guard.py)
    routing_key: bytes | None = None  # X-Routing-Key: the same key, the same version (lifecycle/versions.py)

    @property
    def unversioned_path(self) -> str:
        return f"/v1/models/{self.model}:predict" if self.protocol == "v1" else f"/v2/models/{self.model}/infer"


def match_prediction(path: str, routing_key: bytes | None = None) -> PredictionRoute | None:
    match = PREDICTION_PATH.match(path)
    if match is None:
        return None
    protocol = "v1" if match.group("v1") else "v2"
    return PredictionRoute(protocol, match.group(protocol), match.group("version") or match.group("v1_version"),
                           routing_key)


def route_of(scope) -> PredictionRoute | None:
    """The prediction route the guard matched for this request, or None."""
    return scope.get(ROUTE_KEY)


@dataclass(frozen=True)
class BodyShape:
    """The top-level fields of an API's JSON body, as the API method's signature declares them:
    (name, type, type of each item or None, required). Checking a body parsed by orjson against them is the fast
    lane's way in for a valid body: its request model's pydantic validation, kept for the error words, served
    light models 0.95x the rows at c=1 (benchmarks/results/paired-one-reader.md)."""

    fields: tuple[tuple[str, type, type | None, bool], ...]

    @classmethod
    def of(cls, input_model: type[BaseModel]) -> "BodyShape":
        """From a request model (its fields typed list, dict, str, or Optional of those)."""
        fields = []
        for name, info in input_model.model_fields.items():
            annotation = info.annotation
            if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
                annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
            outer = typing.get_origin(annotation) or annotation
            items = typing.get_args(annotation)[:1] if outer is list else ()
            item = (typing.get_origin(items[0]) or items[0]) if items and items[0] is not typing.Any else None
            fields.append((name, outer, item, info.is_required()))
        return cls(tuple(fields))

    def values(self, document) -> tuple | None:
        """The fields' values in order (None where absent), or None when the body does not have this shape."""
        if not isinstance(document, dict):
            return None
        values = []
        for name, kind, item, required in self.fields:
            value = document.get(name)
            if value is None:
                if required:
                    return None
            elif not isinstance(value, kind) or (item is not None and not all(isinstance(v, item) for v in value)):
                return None
            values.append(value)
        return tuple(values)


V1_EXAMPLE = [[120.0, 15.0]]
V2_EXAMPLE = [{"name": "features", "shape": [1, 2], "datatype": "FP32", "data": [120.0, 15.0]}]


class V1Request(BaseModel):
    """KServe v1 prediction: {"instances": [...]} -> {"predictions": [...]}."""

    instances: list[Any] = Field(description="Feature rows (lists in training order or objects keyed by feature "
                                 "name), or for the transformer token-id lists, strings, or objects keyed by text "
                                 "column (a model trained on several)",
                                 examples=[V1_EXAMPLE, [{"area_m2": 120.0, "age_years": 15.0}], ["xqazbk"]])


class V2Request(BaseModel):
    """Open Inference Protocol inference request (its JSON header, where the body is binary-framed)."""

    inputs: list[dict[str, Any]] = Field(description="One tensor: FP32 'features' [N, F], INT64 'input_ids' [N, L] "
                                         "padded with 0, or BYTES 'text' [N]; or one tensor per (text) column",
                                         examples=[V2_EXAMPLE])
    id: str | None = Field(default=None, description="Echoed in the reply")
    parameters: dict[str, Any] | None = Field(default=None, description="`timeout` (microseconds), "
                                              "`binary_data_output`")
    outputs: list[dict[str, Any]] | None = Field(default=None, description="Output tensors to return")


class V1Reply(BaseModel):
    """What a v1 prediction answers (the API's declared output: the handlers write it with orjson)."""

    predictions: list[Any] = Field(description="A number (or a list, for several targets) per instance; for a "
                                   "classifier, {label, probabilities}")


class V2Reply(BaseModel):
    """What an OIP inference answers as JSON (binary-framed replies carry this as their JSON header)."""

    model_name: str
    model_version: str
    id: str | None = Field(default=None, description="The request's id, where it sent one",
                           json_schema_extra=lambda schema: schema.pop("default"))  # (absent, never null)
    outputs: list[dict[str, Any]]


REQUEST_MODELS = {"v1": V1Request, "v2": V2Request}
