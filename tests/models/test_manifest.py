"""What a version's clients rest on (models/manifest.py): a version that breaks it is held back until promoted, and
the training job says so before saving one."""

import shutil
from pathlib import Path

import pytest

from models.manifest import breaking_change, held_back, stored_oldest_first
from tests.paths import SESSION_HOME


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


def test_a_breaking_version_is_held_back_with_the_versions_that_follow_its_contract_until_promoted():
    old, new = manifest(), manifest(classes=("a", "b"))
    versions = [("v1", old), ("v2", new), ("v3", new), ("v4", old), ("v5", {"format_version": 0})]  # oldest first
    assert held_back(versions, promoted=set()) == {
        "v2": "it would break the clients of version v1 (classes ['a', 'b', 'c'] -> ['a', 'b']; outputs "
              "['probabilities [-1, 3]'] -> ['probabilities [-1, 2]'])",
        "v3": "it would break the clients of version v1 (classes ['a', 'b', 'c'] -> ['a', 'b']; outputs "
              "['probabilities [-1, 3]'] -> ['probabilities [-1, 2]'])"}  # (v5: nothing to compare with)
    promoted = held_back(versions, promoted={"v2"})  # v3 keeps v2's contract; v4 goes back to v1's
    assert list(promoted) == ["v4"] and promoted["v4"].startswith("it would break the clients of version v3 (classes")
    assert held_back(versions[:1], promoted=set()) == {}  # the oldest is always served
    assert list(held_back([("v1", old), ("v2", {}), ("v3", new)], promoted=set())) == ["v3"]  # (v2: no manifest)


def test_versions_of_one_creation_time_are_ordered_as_bentoml_points_latest():
    """A version copied by hand keeps the creation time of its source; the order must not then be the disk's."""
    import bentoml

    with bentoml.models.create("tied") as saving:
        (Path(saving.path) / "weights.bin").write_bytes(b"w")
    original = saving.tag.version
    store = Path(bentoml.models.get(saving.tag).path).parent  # (the store's, not the temporary one `create` fills)
    assert store.parent == SESSION_HOME / "models"
    try:
        shutil.copytree(store / original, store / "copy00000000000")
        model_yaml = store / "copy00000000000" / "model.yaml"
        model_yaml.write_text(model_yaml.read_text().replace(original, "copy00000000000"))
        for latest in (original, "copy00000000000", original):
            (store / "latest").write_text(latest)
            assert [m.tag.version for m in stored_oldest_first("tied")][-1] == latest
    finally:
        for version in (original, "copy00000000000"):
            bentoml.models.delete(f"tied:{version}")
