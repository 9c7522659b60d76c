"""Seeded random request bodies against the real server: whatever arrives, the answer is a 2xx with only
finite numbers in it, or a 4xx whose JSON says what is wrong; never a 5xx, and the server keeps serving.

test_bad_input.py names each class of bad input one by one; this throws their combinations, and the values
at the edges of the datatypes (2**31, 2**63, 2**64, 3.4e38, 1e308, 10**400), at every route. Written on 2026-11-23, it
found a 500 (a v2 datatype sent as a list) and, by hand beside it, three answers that were 200 and wrong: an
INT32 tensor holding 2**40 (numpy wrapped it to 0), FP64 1e308 (inf once cast to the model's float32), and a
regression sent 3e38 (an output of inf, written as null). Each is also a named case in test_bad_input.py."""

import json
import math
import random

import httpx

from tests.support import assert_still_serving

BODIES = 400
SEED = 20261123
EDGES = [0, 1, -1, 5, 255, 259, 260, 2**31, -2**31 - 1, 2**40, 2**63, -2**63 - 1, 2**64, 0.5, 1.5, 3.4e38, -3.4e38,
         1e39, 1e308, -1e308, 1e-320, 10**400, -10**400, True, False, None, "", "ab", "1.5", "FP64", "INT32", "BYTES",
         {}, [], [1, 2]]  # (10**400: JSON allows it, pydantic reads it whole, no float holds it)
VALID = {  # route: a body the server answers with 200
    "/v1/models/regression:predict": {"instances": [[100.0, 10.0], {"area_m2": 80, "age_years": 5}]},
    "/v1/models/mlp:predict": {"instances": [[0.5], [-1.0]]},
    "/v1/models/transformer:predict": {"instances": ["abc", [5, 6, 7]]},
    "/v2/models/regression/infer": {"inputs": [{"name": "features", "shape": [2, 2], "datatype": "FP32",
                                                "data": [100.0, 10.0, 80.0, 5.0]}], "id": "r1"},
    "/v2/models/mlp/infer": {"inputs": [{"name": "features", "shape": [2, 1], "datatype": "FP64",
                                         "data": [[0.5], [-1.0]]}]},
    "/v2/models/transformer/infer": {"inputs": [{"name": "input_ids", "shape": [2, 3], "datatype": "INT64",
                                                 "data": [5, 6, 7, 8, 9, 0]}], "outputs": [{"name": "label"}]},
}
VALID["/v2/models/transformer/versions/0/infer"] = VALID["/v2/models/transformer/infer"]  # (no such version: 404)


def places(document, path=()):
    """Every (container, key) in a JSON document, as paths from the top."""
    items = document.items() if isinstance(document, dict) else enumerate(document) if isinstance(document, list) \
        else []
    for key, item in items:
        yield path + (key,)
        yield from places(item, path + (key,))


def value_at(document, where: tuple):
    for key in where:
        document = document[key]
    return document


def mutate(rng: random.Random, document):
    """The document with one place changed: a value put at the edge of a datatype, or a field dropped."""
    choices = list(places(document))
    if not choices:  # (an earlier change emptied it)
        return document
    # Mostly a number or string where one stands, so that edge values reach the parsers and the model, not
    # only the checks of the document's shape.
    leaves = [where for where in choices if not isinstance(value_at(document, where), (dict, list))]
    where = rng.choice(leaves if leaves and rng.random() < 0.75 else choices)
    parent = value_at(document, where[:-1])
    if rng.random() < 0.85:
        parent[where[-1]] = rng.choice(EDGES)
    else:
        del parent[where[-1]]
    return document


def body(rng: random.Random, route: str):
    """A valid body with up to two changes: a quarter reach the model unchanged, the rest probe one or two
    edges at a time, so the server has to say which."""
    document = json.loads(json.dumps(VALID[route]))
    for _ in range(rng.choice([0, 1, 1, 2])):
        document = mutate(rng, document)
    return document


def numbers_in(document):
    """Every number in a JSON document, and None wherever a null stands."""
    if isinstance(document, dict):
        for item in document.values():
            yield from numbers_in(item)
    elif isinstance(document, list):
        for item in document:
            yield from numbers_in(item)
    elif document is None or (isinstance(document, (int, float)) and not isinstance(document, bool)):
        yield document


def test_random_bodies_get_finite_answers_or_4xx_that_say_why(onnx_server):
    rng = random.Random(SEED)
    answered, refused, wrong = 0, 0, []
    with httpx.Client(base_url=onnx_server.url, timeout=30) as client:
        for _ in range(BODIES):
            route = rng.choice(list(VALID))
            sent = body(rng, route)
            reply = client.post(route, content=json.dumps(sent).encode(), headers={"Content-Type": "application/json"})
            if reply.status_code == 200:
                answered += 1
                found = list(numbers_in(reply.json()))
                if not all(n is not None and math.isfinite(n) for n in found):
                    wrong.append((route, sent, reply.text[:200]))
            elif 400 <= reply.status_code < 500 and isinstance(reply.json().get("error"), str) \
                    and reply.json()["error"]:
                refused += 1
            else:
                wrong.append((route, sent, reply.status_code, reply.text[:200]))
    assert not wrong, wrong[:3]
    assert answered >= BODIES / 5 and refused >= BODIES / 3, (answered, refused)  # both outcomes, often
    assert_still_serving(onnx_server)
