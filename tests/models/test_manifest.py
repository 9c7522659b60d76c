"""What a version's clients rest on (models/manifest.py): the service refuses to swap in a version that breaks it,
and the training job says so before saving one."""

import pytest

from models.manifest import breaking_change


def manifest(columns=(("size", "numeric"), ("city", "categorical")), classes=("a", "b", "c"), max_len=None,
             vocabulary=("x", "y")) -> dict:
    return {"input_kind": "features" if max_len is None else "tokens", "feature_names": [n for n, _ in columns],
            "columns": [{"name": n, "kind": k, "value_type": "string", "vocabulary": list(vocabulary)}
                        for n, k in columns],
            "task": "multiclass", "class_names": list(classes), "inputs": [{"max_len": max_len}],
            "outputs": [{"name": "probabilities", "shape": [-1, len(classes)]}]}


@pytest.mark.parametrize("candidate, change", [
    (manifest(vocabulary=("x", "y", "z")), None),  # an unseen category is served as missing
    (manifest(columns=(("city", "categorical"), ("size", "numeric"))),
     "features ['size', 'city'] -> ['city', 'size']"),  # rows sent as lists would mean something else
    (manifest(columns=(("size", "numeric"), ("city", "numeric"))),
     "categorical columns ['city (string)'] -> []"),
    (manifest(classes=("a", "b")), "classes ['a', 'b', 'c'] -> ['a', 'b']; outputs ['probabilities [-1, 3]'] -> "
                                   "['probabilities [-1, 2]']"),
])
def test_a_version_that_changes_what_clients_send_or_read_is_a_breaking_change(candidate, change):
    assert breaking_change(manifest(), candidate) == change


def test_a_shorter_max_len_breaks_clients_and_a_longer_one_does_not():
    tokens = manifest(columns=(("text", "numeric"),), max_len=64)
    assert breaking_change(tokens, manifest(columns=(("text", "numeric"),), max_len=128)) is None
    assert breaking_change(tokens, manifest(columns=(("text", "numeric"),), max_len=32)) == "max_len 64 -> 32"
    assert breaking_change(manifest(), tokens).startswith("input kind features -> tokens")


def test_refusing_texts_that_the_served_version_cut_to_max_len_breaks_its_clients():
    cutting = manifest(columns=(("text", "numeric"),), max_len=64)
    cutting["inputs"][0]["truncate"] = True
    refusing = manifest(columns=(("text", "numeric"),), max_len=64)
    assert breaking_change(cutting, refusing) == ("a text longer than max_len is refused, no longer read on its "
                                                  "first max_len tokens")
    assert breaking_change(refusing, cutting) is None  # (what was refused is now answered)
