"""The train command on user files, TOML configs and --dry-run, through the real entry point."""

import json
import subprocess
import sys
from pathlib import Path

import bentoml
import numpy as np
import pandas as pd

from models.manifest import read_manifest
from service.config import ServeConfig
from service.lifecycle import repository
from service.runtime.registry import ModelRegistry
from tests.conftest import REPO, run_modelserve, store_snapshot
from training.cli import main
from training.store import served_manifest


def latest_manifest(name: str) -> dict:
    return read_manifest(Path(bentoml.models.get(f"{name}:latest").path))


def test_mlp_multiclass_on_user_csv(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 2))
    species = np.where(x[:, 0] > 0.5, "oak", np.where(x[:, 1] > 0, "pine", "birch"))
    pd.DataFrame({"height": x[:, 0], "girth": x[:, 1], "noise": rng.normal(size=300), "species": species}) \
        .to_csv(tmp_path / "trees.csv", index=False)
    code = main(["train", "mlp", "--name", "trees", "--data", str(tmp_path / "trees.csv"), "--target", "species",
                 "--features", "height,girth", "--task", "multiclass", "--epochs", "40",
                 "--run-dir", str(tmp_path / "run")])
    assert code == 0
    manifest = latest_manifest("trees")
    assert manifest["task"] == "multiclass" and manifest["class_names"] == ["birch", "oak", "pine"]
    assert manifest["feature_names"] == ["height", "girth"]
    assert manifest["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]}]
    assert manifest["metrics"]["accuracy"] > 0.9


def test_transformer_on_user_text_parquet_detects_binary_and_fits_max_len_to_the_longest_text(tmp_path):
    texts = ["good day", "bad day", "good food", "bad food", "so good", "so bad"] * 10 + ["a good " + "x" * 60]
    labels = ["pos" if "good" in t else "neg" for t in texts]
    pd.DataFrame({"review": texts, "sentiment": labels}).to_parquet(tmp_path / "reviews.parquet")
    code = main(["train", "transformer", "--name", "reviews", "--data", str(tmp_path / "reviews.parquet"),
                 "--target", "sentiment", "--epochs", "3", "--run-dir", str(tmp_path / "run")])
    assert code == 0
    manifest = latest_manifest("reviews")
    assert manifest["task"] == "binary" and manifest["class_names"] == ["neg", "pos"]
    assert manifest["data"]["source"].endswith("reviews.parquet")
    assert manifest["model_config"]["max_len"] == manifest["inputs"][0]["max_len"] == 128  # 67 byte tokens
    assert ("max_len", 128) in [(c["setting"], c["value"]) for c in manifest["choices"]]
    # Retrained on short texts alone, it keeps the stored version's 128, which its clients' texts fit
    pd.DataFrame({"review": texts[:-1], "sentiment": labels[:-1]}).to_parquet(tmp_path / "reviews.parquet")
    assert main(["train", "transformer", "--name", "reviews", "--data", str(tmp_path / "reviews.parquet"),
                 "--target", "sentiment", "--epochs", "1", "--run-dir", str(tmp_path / "run2")]) == 0
    assert latest_manifest("reviews")["model_config"]["max_len"] == 128


def test_texts_longer_than_a_set_max_len_are_cut_said_and_recorded_for_the_service(tmp_path, capsys):
    texts = ["good " + "x" * (i % 40) for i in range(30)] + ["bad " + "y" * (i % 40) for i in range(30)]
    pd.DataFrame({"review": texts, "verdict": ["good"] * 30 + ["bad"] * 30}).to_csv(tmp_path / "r.csv", index=False)
    (tmp_path / "small.toml").write_text("[model]\nmax_len = 16\nd_model = 16\nn_heads = 2\nn_layers = 1\n")
    assert main(["train", "transformer", "--name", "cut-reviews", "--data", str(tmp_path / "r.csv"), "--target",
                 "verdict", "--config", str(tmp_path / "small.toml"), "--epochs", "1",
                 "--run-dir", str(tmp_path / "run")]) == 0
    assert "35 of 60 text(s) in 'review' are longer than max_len 16 byte tokens: the model reads their first 16" \
        in capsys.readouterr().out
    manifest = latest_manifest("cut-reviews")
    assert manifest["inputs"][0]["max_len"] == 16 and manifest["inputs"][0]["truncate"] is True
    assert manifest["data"]["truncated_texts"] == 35


def test_toml_config_sets_model_and_training_fields_and_flags_win(tmp_path):
    (tmp_path / "big.toml").write_text("[model]\nd_model = 32\nn_heads = 2\nn_layers = 1\n"
                                       "[train]\nepochs = 2\nlr = 0.001\n")
    code = main(["train", "transformer", "--name", "from-toml", "--config", str(tmp_path / "big.toml"),
                 "--epochs", "1", "--run-dir", str(tmp_path / "run")])
    assert code == 0
    manifest = latest_manifest("from-toml")
    assert manifest["model_config"]["d_model"] == 32 and manifest["model_config"]["n_layers"] == 1
    assert manifest["train_config"]["lr"] == 0.001 and manifest["epochs_run"] == 1


def test_toml_data_keys_declare_column_kinds_and_train_keys_win_over_choices(tmp_path):
    rng = np.random.default_rng(0)
    grade = rng.integers(1, 4, 120)  # integer codes: numeric unless declared categorical
    pd.DataFrame({"grade": grade, "size": rng.normal(size=120), "price": 10.0 * grade + rng.normal(size=120)}) \
        .to_csv(tmp_path / "flats.csv", index=False)
    (tmp_path / "flats.toml").write_text(f'[data]\npath = "{tmp_path / "flats.csv"}"\ntarget = "price"\n'
                                         'categorical = ["grade"]\n[train]\nsolver = "gradient"\nepochs = 3\n')
    assert main(["train", "regression", "--name", "flats", "--config", str(tmp_path / "flats.toml"),
                 "--run-dir", str(tmp_path / "run")]) == 0
    manifest = latest_manifest("flats")
    grade_column, size_column = manifest["columns"]
    assert grade_column["kind"] == "categorical" and grade_column["vocabulary"] == ["1", "2", "3"]
    assert grade_column["value_type"] == "integer" and size_column["kind"] == "numeric"
    assert manifest["train_config"]["solver"] == "gradient"  # [train] set it: no choice overrides it
    assert [c["setting"] for c in manifest["choices"]] == ["refit"]


def test_a_version_that_would_break_its_clients_is_said_and_held_back_until_promoted(tmp_path, capsys):
    rng = np.random.default_rng(0)
    pd.DataFrame({"a": rng.normal(size=40), "b": rng.normal(size=40), "y": rng.normal(size=40)}) \
        .to_csv(tmp_path / "d.csv", index=False)
    args = ["train", "regression", "--name", "contract", "--data", str(tmp_path / "d.csv"), "--target", "y",
            "--run-dir", str(tmp_path / "run")]
    assert main(args) == 0
    first = newest_tag("contract")
    assert "would break" not in capsys.readouterr().out
    assert main(args + ["--exclude", "b"]) == 0
    second = newest_tag("contract")
    assert f"contract: this version would break the clients of {first} (features ['a', 'b'] -> ['a'])" \
        in capsys.readouterr().out
    # Held back: a server started now (a restart, a new replica) serves the version before it, as do the running ones.
    assert served_manifest("contract")[0] == first and version_served_at_start("contract") == first
    registry = ModelRegistry(ServeConfig(models=("contract",)))  # (a server that does not watch the store)
    registry.load()
    reasons = {e["version"]: e["reason"] for e in repository.index(registry, None) if e["name"] == "contract"}
    assert reasons[second.split(":")[1]].startswith("it would break the clients of version") and \
        f"modelserve promote {second}" in reasons[second.split(":")[1]]
    assert main(["models", "--json"]) == 0
    held = {row["tag"]: row["held back"] for row in json.loads(capsys.readouterr().out)}
    assert held[first] == "" and held[second].startswith("it would break the clients of version")
    assert main(["models"]) == 0 and second in capsys.readouterr().out  # the whole tag, which promote takes
    for tag, why in [("contract", "name the version to promote"), (f"{second}x", "is not in the model store")]:
        assert main(["promote", tag]) == 2 and why in capsys.readouterr().err
    assert main(["promote", second]) == 0
    assert f"{second} promoted, although it would break the clients of version {first.split(':')[1]} (features" \
        in capsys.readouterr().out
    assert served_manifest("contract")[0] == second and version_served_at_start("contract") == second
    assert main(["promote", first]) == 0 and "what is served does not change" in capsys.readouterr().out
    assert main(["promote", "--undo", second]) == 0 and "held back again, as it would break" in \
        capsys.readouterr().out
    assert version_served_at_start("contract") == first
    # a served version whose manifest has another layout: nothing to compare with, and the job saves
    (Path(bentoml.models.get(second).path) / "manifest.json").write_text('{"format_version": 0}')
    assert main(args) == 0 and "would break" not in capsys.readouterr().out


def newest_tag(name: str) -> str:
    return str(bentoml.models.get(f"{name}:latest").tag)


def version_served_at_start(name: str) -> str:
    registry = ModelRegistry(ServeConfig(models=(name,)))
    registry.load()
    return str(registry.models[name].newest.artifacts.tag)


def test_toml_with_unknown_table_is_refused(tmp_path, capsys):
    (tmp_path / "c.toml").write_text("[optimiser]\nlr = 1\n")
    assert main(["train", "mlp", "--config", str(tmp_path / "c.toml")]) == 2
    assert "unknown table(s) ['optimiser']" in capsys.readouterr().err


def test_dry_run_exports_and_checks_but_saves_nothing(tmp_path):
    home = tmp_path / "home"
    result = run_modelserve("train", "transformer", "--dry-run", home=home, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "nothing saved to the model store" in result.stdout and "parity max diff" in result.stdout
    assert store_snapshot(home) == {}
    # What a run leaves in its working directory (a checkout, under `make run`) is under runs/, which git ignores:
    # a checkpoint once landed at the top of the checkout and was committed.
    assert {p.name for p in tmp_path.iterdir()} - {"home"} <= {"runs"}
    assert subprocess.run(["git", "check-ignore", "-q", "runs/transformer/last.pt"], cwd=REPO).returncode == 0


def test_commands_other_than_train_start_without_importing_torch():
    """`modelserve serve` starts every server through this module: importing torch there cost 2-3 s per start."""
    check = ("import sys, training.cli as cli; parser = cli._parser(); parser.parse_args(['serve']); "
             "parser.parse_args(['examples']); torch_after_serve = 'torch' in sys.modules; "
             "parser.parse_args(['train', 'mlp']); sys.exit(1 if torch_after_serve else 0)")
    result = subprocess.run([sys.executable, "-c", check], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, "parsing `serve` imported torch" + result.stderr[-2000:]
