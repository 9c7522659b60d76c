"""Open Inference Protocol (KServe v2): tensors in, tensors out, as Triton and KServe clients send them.

Features come as FP32 `features` [N, F] (a categorical column holding its category's code, NaN where a value is
missing), or, for models with column kinds, as one tensor per column named by the column: BYTES [N] of category
names for a categorical column, FP32 (or FP64, INT64, INT32) [N] for a numeric one, `null` (JSON) or NaN (binary)
where a value is missing. Token models take INT64 `input_ids` [N, L] padded with 0, or BYTES `text` [N]; one trained
on several text columns, one BYTES [N] tensor per column, named by the column (null for an empty cell). Outputs are
FP32 `predictions` / `probabilities` [N, K], and for classifiers a BYTES `label` [N].
"""

import math

import numpy as np

from service.errors import InvalidInput
from service.runtime.registry import ServedModel
from service.runtime.schema import kind_of, past_any_float

NUMERIC = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32, "INT16": np.int16,
           "INT8": np.int8, "UINT8": np.uint8}
ALL_DATATYPES = set(NUMERIC) | {"BOOL", "BYTES", "FP16", "BF16", "UINT16", "UINT32", "UINT64"}


def _tensor(spec: dict, index: int) -> tuple[str, list[int], str, list]:
    if not isinstance(spec, dict):
        raise InvalidInput(f"inputs[{index}] must be an object with name, shape, datatype and data")
    missing = [k for k in ("name", "shape", "datatype", "data") if k not in spec]
    if missing:
        raise InvalidInput(f"inputs[{index}] is missing {', '.join(missing)}")
    if not isinstance(spec["name"], str):
        raise InvalidInput(f"inputs[{index}]: name must be a string, got {kind_of(spec['name'])}")
    shape = spec["shape"]
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                               for d in shape):
        raise InvalidInput(f"inputs[{index}] ({spec['name']}): shape must be a list of non-negative integers")
    if not isinstance(spec["datatype"], str) or spec["datatype"] not in ALL_DATATYPES:
        raise InvalidInput(f"inputs[{index}] ({spec['name']}): unknown datatype {spec['datatype']!r}")
    return spec["name"], shape, spec["datatype"], spec["data"]


def _flat(data):
    """The values of a nested list, in order."""
    for item in data if isinstance(data, list) else [data]:
        if isinstance(item, list):
            yield from _flat(item)
        else:
            yield item


def _first_unfit(values: list, datatype: str) -> str | None:
    """What is wrong with the first of `values` (from JSON) that `datatype` cannot hold; None when all fit."""
    info = np.iinfo(NUMERIC[datatype]) if datatype.startswith("INT") else None
    for position, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"data must hold only {datatype} numbers; value {position} is {kind_of(value)}"
        if past_any_float(value):
            return f"value {position} is an integer of {value.bit_length()} bits, beyond {datatype}'s range"
        if info is None:
            continue
        if isinstance(value, float) and not value.is_integer():
            return f"{datatype} data holds {value} (value {position}), not an integer"
        if not info.min <= value <= info.max:  # (JSON integers past 64 bits arrive as floats)
            return f"{value:.0f} (value {position}) is outside {datatype}'s range [{info.min}, {info.max}]"
        if isinstance(value, float):
            return f"{datatype} data holds {value} (value {position}), written as a float, not an integer"
    return None


def _array(name: str, shape: list[int], datatype: str, data, allowed: tuple[str, ...]) -> np.ndarray:
    """The input's data as an array of `shape`: integers as `datatype`, checked to fit it (numpy would wrap
    2**40 into INT32 as 0 without a word); floating-point data as sent, for the caller's checked cast."""
    if datatype not in allowed:
        raise InvalidInput(f"input {name!r}: datatype {datatype} is not supported here; use {' or '.join(allowed)}")
    try:
        raw = np.asarray(data)  # dtype inferred, so strings, booleans and nulls show up as such
    except ValueError:
        raise InvalidInput(f"input {name!r}: data must be a flat or evenly nested list of numbers") from None
    integers = datatype.startswith("INT")
    if raw.dtype.kind not in "iuf" or (integers and raw.dtype.kind == "f"):
        # Not all numbers, or integers past int64 (numpy makes those float64 or objects): walk the values
        # to say which one and why. For floating-point data, integers past int64 are numbers all the same.
        values = list(_flat(data))
        problem = _first_unfit(values, datatype)
        if problem is not None:
            raise InvalidInput(f"input {name!r}: {problem}")
        raw = np.array(values, dtype=np.float64)
    flat = raw.reshape(-1)
    expected = math.prod(shape)
    if flat.size != expected:
        raise InvalidInput(f"input {name!r}: shape {shape} holds {expected} values but data has {flat.size}")
    if integers and flat.size:
        info = np.iinfo(NUMERIC[datatype])
        if flat.min() < info.min or flat.max() > info.max:
            position = int(np.flatnonzero((flat < info.min) | (flat > info.max))[0])
            raise InvalidInput(f"input {name!r}: {flat[position]} (value {position}) is outside {datatype}'s "
                               f"range [{info.min}, {info.max}]")
        flat = flat.astype(NUMERIC[datatype])
    return flat.reshape(shape)


def _column_values(model: ServedModel, inputs: list, allowed: dict[str, tuple[str, tuple[str, ...]]], send: str,
                   count_check) -> list[list]:
    """One tensor per column, named by it, each [N] or [N, 1] -> each column's N values, in `allowed`'s order.
    `allowed`: column -> (its kind, the datatypes it may come as); `send`: what to send instead of an unknown name."""
    tensors = {}
    for index, spec in enumerate(inputs):
        name, shape, datatype, data = _tensor(spec, index)
        if name not in allowed:
            raise InvalidInput(f"unknown input {name!r} for model {model.name!r}; send {send}")
        if name in tensors:
            raise InvalidInput(f"input {name!r} is sent twice")
        tensors[name] = (shape, datatype, data)
    missing = [n for n in allowed if n not in tensors]
    if missing:
        raise InvalidInput(f"input {missing[0]!r} is missing; a tensor per column needs all of {', '.join(allowed)}")
    first = tensors[next(iter(allowed))][0]
    rows = first[0] if first else 0
    count_check(rows)
    values = []
    for name, (kind, datatypes) in allowed.items():
        shape, datatype, data = tensors[name]
        if shape not in ([rows], [rows, 1]):
            raise InvalidInput(f"input {name!r}: shape must be [{rows}] or [{rows}, 1] like the other columns, got "
                               f"{shape}")
        if datatype not in datatypes:
            raise InvalidInput(f"input {name!r} ({kind}): datatype {datatype} is not supported here; use "
                               f"{' or '.join(datatypes)}")
        flat = data.tolist() if isinstance(data, np.ndarray) else list(_flat(data))  # (an array: binary data)
        if len(flat) != rows:
            raise InvalidInput(f"input {name!r}: shape {shape} holds {rows} values but data has {len(flat)}")
        values.append(flat)
    return values


def _column_tensors(model: ServedModel, inputs: list, count_check) -> np.ndarray:
    """One tensor per column (categories by name, gaps as null) -> an engine batch, through the v1 row parser so
    that both protocols map and refuse values alike."""
    schema = model.schema
    allowed = {c.name: (c.kind, (("BYTES", "INT64", "INT32") if c.value_type == "integer" else ("BYTES",))
                        if c.is_categorical else ("FP32", "FP64", "INT64", "INT32")) for c in schema.columns}
    values = _column_values(model, inputs, allowed, f"'features' [N, {len(schema.names)}] or one tensor per column: "
                            f"{', '.join(schema.names)}", count_check)
    return schema.parse([list(row) for row in zip(*values)])


def _text_tensors(model: ServedModel, inputs: list, count_check) -> np.ndarray:
    """One BYTES tensor per text column (an empty cell as null or "") -> an engine batch, joined by the v1 parser."""
    columns = model.schema.text_columns
    values = _column_values(model, inputs, dict.fromkeys(columns, ("text", ("BYTES",))), "'input_ids' (INT64) or one "
                            f"BYTES tensor per text column: {', '.join(columns)}", count_check)
    return model.schema.parse([dict(zip(columns, row)) for row in zip(*values)])


def parse_inputs(model: ServedModel, inputs: list, count_check) -> np.ndarray:
    """The request's input tensor(s) -> an engine batch."""
    schema = model.schema
    if len(inputs) > 1 and schema.is_tokens and schema.text_columns:
        return _text_tensors(model, inputs, count_check)
    if len(inputs) > 1 and not schema.is_tokens and schema.columns is not None:
        return _column_tensors(model, inputs, count_check)
    if len(inputs) != 1:
        raise InvalidInput(f"'inputs' must be a list of exactly one tensor for model {model.name!r}")
    name, shape, datatype, data = _tensor(inputs[0], 0)
    if schema.is_tokens:
        if name in schema.text_columns:
            return _text_tensors(model, inputs, count_check)
        if name == "text" and len(schema.text_columns) > 1:
            raise InvalidInput(f"model {model.name!r} reads {len(schema.text_columns)} text columns; send one BYTES "
                               f"tensor per column ({', '.join(schema.text_columns)}), or 'input_ids' (INT64)")
        if name == "text":
            if datatype != "BYTES" or len(shape) != 1:
                raise InvalidInput("input 'text' must be BYTES with shape [N]")
            if not isinstance(data, list) or len(data) != shape[0]:
                raise InvalidInput(f"input 'text': shape {shape} but data has "
                                   f"{len(data) if isinstance(data, list) else 'no list of'} strings")
            count_check(shape[0])
            return schema.parse(data)
        if name != "input_ids":
            raise InvalidInput(f"unknown input {name!r} for model {model.name!r}; send 'input_ids' (INT64) or "
                               "'text' (BYTES)")
        if len(shape) != 2:
            raise InvalidInput(f"input 'input_ids' must have shape [N, L], got {shape}")
        count_check(shape[0])
        ids = _array(name, shape, datatype, data, ("INT64", "INT32"))
        return schema.check_id_matrix(ids.astype(np.int64))
    if name != "features":
        if schema.columns is not None:
            return _column_tensors(model, inputs, count_check)
        raise InvalidInput(f"unknown input {name!r} for model {model.name!r}; send 'features' (FP32)")
    width = len(schema.names)
    if len(shape) != 2 or shape[1] != width:
        raise InvalidInput(f"input 'features' must have shape [N, {width}] ({', '.join(schema.names)}), "
                           f"got {shape}")
    count_check(shape[0])
    return schema.as_float32(_array(name, shape, datatype, data, ("FP32", "FP64", "INT64", "INT32")))


def output_names(model: ServedModel) -> list[str]:
    return [model.manifest["outputs"][0]["name"]] + (["label"] if model.task != "regression" else [])


def format_outputs(model: ServedModel, outputs: np.ndarray, requested: list | None) -> list[dict]:
    available = output_names(model)
    wanted = available
    if requested:
        wanted = [r.get("name") if isinstance(r, dict) else None for r in requested]
        unknown = [w for w in wanted if w not in available]
        if unknown:
            raise InvalidInput(f"unknown output {unknown[0]!r} requested; model {model.name!r} has "
                               f"{', '.join(available)}")
    tensors = {available[0]: {"name": available[0], "datatype": "FP32", "shape": list(outputs.shape),
                              "data": outputs.reshape(-1)}}
    if "label" in available:
        classes = model.manifest["class_names"]
        tensors["label"] = {"name": "label", "datatype": "BYTES", "shape": [outputs.shape[0]],
                            "data": [classes[i] for i in outputs.argmax(axis=1).tolist()]}
    return [tensors[w] for w in wanted]


def model_metadata(model: ServedModel, versions) -> dict:
    """The inputs a client sends: for a model with categorical columns, one tensor per column (its kind and
    vocabulary under `parameters`); otherwise the one `features` tensor (the column kinds under its `parameters`).
    Likewise one BYTES tensor per text column for a model trained on several, else `input_ids`. Either form is
    accepted; metadata lists one, so that tools which send every listed input send a valid set.
    `versions`: the model's ModelVersions, every one of which `versions` lists (the newest first)."""
    spec = model.manifest["inputs"][0]
    inputs = [{"name": spec["name"], "datatype": spec["datatype"], "shape": spec["shape"]}]
    columns = None if model.schema.is_tokens else model.schema.columns
    text = model.schema.text_columns if model.schema.is_tokens else ()
    if len(text) > 1:
        inputs = [{"name": c, "datatype": "BYTES", "shape": [-1], "parameters": {
            "kind": "text", "max_len": model.schema.max_len, "also_accepted": inputs[0]}} for c in text]
    elif model.schema.is_tokens:  # (the other form under `parameters`: tools send every input listed)
        inputs[0]["parameters"] = {"also_accepted": {"name": "text", "datatype": "BYTES", "shape": [-1]},
                                   "max_len": model.schema.max_len, "truncate": model.schema.truncate}
    elif columns is not None and model.schema.has_categories:
        inputs = [{"name": c.name, "datatype": "BYTES" if c.is_categorical else "FP32", "shape": [-1],
                   "parameters": c.to_dict()} for c in columns]
    elif columns is not None:
        inputs[0]["parameters"] = {"columns": [c.to_dict() for c in columns]}
    outputs = [{"name": o["name"], "datatype": o["datatype"], "shape": o["shape"]} for o in model.manifest["outputs"]]
    if model.task != "regression":
        outputs.append({"name": "label", "datatype": "BYTES", "shape": [-1]})
    return {"name": model.name, "versions": [m.version for m in versions.served], "platform": f"{model.backend}",
            "inputs": inputs, "outputs": outputs}
