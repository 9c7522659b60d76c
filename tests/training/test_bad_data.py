"""Each kind of bad input ends the job with exit code 2, one line naming the problem, and an untouched store."""

from pathlib import Path

import pytest
import torch

from models.regression import LinearRegression, RegressionConfig
from tests.conftest import REPO, run_modelserve, store_snapshot
from training.cli import main
from training.data import Dataset
from training.distributed import Runtime
from training.errors import TrainingDiverged
from training.loop import TrainConfig, train

GOOD_ROWS = "area,age,price\n" + "".join(f"{50 + i},{i % 30},{100 + 2 * i}\n" for i in range(30))

CASES = {
    # name: (file name, file content or None for no file, extra args, expected message fragment)
    "missing file": ("nope.csv", None, [], "nope.csv: file not found"),
    "empty file": ("empty.csv", "", [], "empty.csv: file is empty"),
    "header only": ("header.csv", "area,age,price\n", [], "header.csv: file has a header but no data rows"),
    "missing target": ("d.csv", GOOD_ROWS, ["--target", "cost"], "target column 'cost' not found"),
    "missing feature": ("d.csv", GOOD_ROWS, ["--features", "area,rooms"], "feature column(s) ['rooms'] not found"),
    "non-numeric value": ("d.csv", GOOD_ROWS.replace("\n60,10,", "\n60,ten,"), [],
                          "column 'age', row 11 (line 12): 'ten' is not a number (if the column is categorical, "
                          "declare it with --categorical age)"),
    "non-numeric value in a column declared numeric": (
        "d.csv", GOOD_ROWS.replace("\n60,10,", "\n60,ten,").replace("\n61,11,", "\n61,eleven,").replace(
            "\n62,12,", "\n62,twelve,").replace("\n63,13,", "\n63,x,"), ["--numeric", "age"],
        "column 'age', row 11 (line 12): 'ten' is not a number"),
    "column empty in every row": ("d.csv", "area,age,price,note\n" + "".join(
        f"{50 + i},{i % 30},{100 + 2 * i},\n" for i in range(30)), [], "column 'note' is empty in every row"),
    "category column with a value per row": ("d.csv", "area,age,price,owner\n" + "".join(
        f"{50 + i},{i % 30},{100 + 2 * i},person{i}\n" for i in range(30)), [],
        "column 'owner' has 30 distinct values in 30 rows, too many to learn from as categories"),
    "exclude naming no column": ("d.csv", GOOD_ROWS, ["--exclude", "rooms"],
                                 "--exclude names column(s) ['rooms'] not found; columns are ['area', 'age', 'price']"),
    "categorical flag naming no feature": ("d.csv", GOOD_ROWS, ["--categorical", "colour"],
                                           "--categorical names ['colour'], which are not feature columns"),
    "column declared both ways": ("d.csv", GOOD_ROWS, ["--categorical", "age", "--numeric", "age"],
                                  "column(s) ['age'] declared both --categorical and --numeric"),
    "value past float32's range": ("d.csv", GOOD_ROWS.replace("\n62,12,", "\n62,1e300,"), [],
                                   "column 'age', row 13 (line 14): '1e+300' is beyond float32's range"),
    "feature named twice": ("d.csv", GOOD_ROWS, ["--features", "area,age,area"],
                            "feature column(s) ['area'] named more than once in the features"),
    "model name that is a path": ("d.csv", GOOD_ROWS, ["--name", "../evil"],
                                  "--name '../evil': ../evil is not a valid BentoML tag"),
    "model name with a version": ("d.csv", GOOD_ROWS, ["--name", "houses:v2"],
                                  "--name 'houses:v2': houses:v2 is not a valid BentoML tag"),
    "too few rows": ("small.csv", "area,age,price\n1,2,3\n4,5,6\n7,8,9\n", [],
                     "small.csv: 3 data rows with a target; a train/validation split needs at least 10"),
    "unsupported type": ("d.xlsx", "whatever", [], "unsupported file type '.xlsx'"),
    "wrong task for model": ("d.csv", GOOD_ROWS, ["--task", "binary"], "model 'regression' cannot do --task binary"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_data_exits_nonzero_names_problem_and_leaves_store_untouched(case, tmp_path, capsys):
    filename, content, extra, fragment = CASES[case]
    path = tmp_path / filename
    if content is not None:
        path.write_text(content)
    before = store_snapshot()
    args = ["train", "regression", "--data", str(path), "--run-dir", str(tmp_path / "run")]
    if "--target" not in extra:
        args += ["--target", "price"]
    code = main(args + extra)
    err = capsys.readouterr().err
    assert code == 2
    assert fragment in err
    assert len(err.strip().splitlines()) == 1, err
    assert store_snapshot() == before


TOML_CASES = {
    # name: (model, config file, expected message fragment)
    "string for an integer": ("transformer", '[model]\nd_model = "64"\n',
                              "invalid TransformerConfig: d_model must be an integer, got '64'"),
    "float for an integer": ("transformer", "[train]\nepochs = 2.5\n",
                             "invalid TrainConfig: epochs must be an integer, got 2.5"),
    "boolean for a number": ("regression", "[train]\nlr = true\n", "lr must be a number, got True"),
    "string for a boolean": ("regression", '[train]\ncompile = "yes"\n', "compile must be true or false, got 'yes'"),
    "list of the wrong things": ("mlp", '[model]\nhidden_sizes = [64, "x"]\n',
                                 "hidden_sizes must be a list of integers, got [64, 'x']"),
    "value where a table belongs": ("regression", "model = 5\n", "c.toml: model must be a table"),
    "exclude not a list": ("regression", '[data]\nexclude = "id"\n',
                           "invalid [data]: exclude must be a list of column names, got 'id'"),
    "data path not a string": ("regression", "[data]\npath = 5\n", "invalid [data]: path must be a string, got 5"),
    "vocabulary smaller than the data's ids": ("transformer", "[model]\nvocab_size = 10\n",
                                               "[model] vocab_size 10 is too small for the data, which holds token id"),
    "max_len shorter than the data": ("transformer", "[model]\nmax_len = 8\n",
                                      "[model] max_len 8 is shorter than the data's sequences (32 tokens)"),
}


@pytest.mark.parametrize("case", sorted(TOML_CASES))
def test_a_config_file_of_the_wrong_types_or_sizes_is_named_not_a_traceback(case, tmp_path, capsys):
    model, text, fragment = TOML_CASES[case]
    (tmp_path / "c.toml").write_text(text)
    before = store_snapshot()
    code = main(["train", model, "--config", str(tmp_path / "c.toml"), "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and fragment in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert store_snapshot() == before


def test_bad_config_values_are_all_named(tmp_path, capsys):
    (tmp_path / "c.toml").write_text("[model]\nd_model = 30\nn_heads = 4\n[train]\nlr = -1\nbatch_size = 0\n")
    code = main(["train", "transformer", "--config", str(tmp_path / "c.toml"), "--dry-run"])
    err = capsys.readouterr().err
    assert code == 2 and "lr must be > 0" in err and "batch_size must be >= 1" in err


def test_console_script_process_exits_2_and_writes_nothing(tmp_path):
    """The same contract through a real process: exit status, stderr, and a store that stays empty."""
    (tmp_path / "d.csv").write_text(GOOD_ROWS.replace("\n60,10,", "\n60,1e39,"))
    home = tmp_path / "home"
    result = run_modelserve("train", "mlp", "--data", "d.csv", "--target", "price", home=home, cwd=tmp_path)
    assert result.returncode == 2
    assert "d.csv: column 'age', row 11 (line 12): '1e+39' is beyond float32's range" in result.stderr
    assert store_snapshot(home) == {}
    assert Path(REPO).is_dir()


def test_a_diverging_run_exits_1_naming_the_step_and_saves_nothing(tmp_path, capsys):
    (tmp_path / "d.csv").write_text(GOOD_ROWS)
    before = store_snapshot()
    code = main(["train", "regression", "--solver", "gradient", "--data", str(tmp_path / "d.csv"), "--target", "price",
                 "--lr", "1e30",
                 "--epochs", "2", "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 1
    assert "epoch 2, step 2: the training loss is inf; lower --lr (now 1e+30)" in err, err
    assert store_snapshot() == before


def test_validation_metrics_that_are_not_numbers_end_training_before_anything_is_saved(tmp_path):
    # A value float32 can hold, far outside the training rows: standardised, it overflows to inf.
    x = torch.linspace(0, 1, 40).unsqueeze(1)  # (40, 1)
    train_data = Dataset("t", "regression", x, 1000 * x, ["x"], ["y"])
    val_data = Dataset("t", "regression", torch.tensor([[0.5], [3.4e38]]), torch.tensor([[500.0], [0.0]]), ["x"],
                       ["y"])
    model = LinearRegression(RegressionConfig(n_features=1))
    with pytest.raises(TrainingDiverged, match=r"the validation metrics .*=inf.* are not numbers"):
        train("regression", model, train_data, val_data, TrainConfig(epochs=1, device="cpu"),
              Runtime(0, 1, torch.device("cpu")), tmp_path)
