"""Built-in datasets hold what they promise; user files load with their names and classes."""

import pandas as pd
import pytest
import torch

from models import ByteTokenizer
from training import data


def test_housing_follows_its_coefficients():
    ds = data.housing(n=4000)
    x = torch.cat([torch.ones(len(ds), 1), ds.inputs.double()], dim=1)  # (N, 3)
    coef = torch.linalg.lstsq(x, ds.targets.double()).solution.squeeze(1)
    expected = torch.tensor(list(data.HOUSING_COEFFICIENTS.values()), dtype=torch.float64)
    torch.testing.assert_close(coef, expected, rtol=0.05, atol=0.5)
    assert ds.feature_names == ["area_m2", "age_years"]


def test_order_task_labels_follow_positions_and_classes_share_token_counts():
    ds = data.order_task(n=500)
    a_id, b_id = ByteTokenizer().encode("ab")
    for ids, label in zip(ds.inputs, ds.targets):
        pos_a = int((ids == a_id).nonzero()[0])
        pos_b = int((ids == b_id).nonzero()[0])
        assert label == int(pos_a < pos_b)
        assert int((ids == a_id).sum()) == int((ids == b_id).sum()) == 1
    assert 0.4 < float(ds.targets.float().mean()) < 0.6


def test_split_is_seeded_and_disjoint():
    ds = data.zigzag(n=100)
    train_a, val_a = ds.split(0.2, seed=3)
    train_b, val_b = ds.split(0.2, seed=3)
    assert torch.equal(val_a.inputs, val_b.inputs) and len(val_a) == 20 and len(train_a) == 80
    assert not set(val_a.inputs.flatten().tolist()) & set(train_a.inputs.flatten().tolist())


def test_csv_and_parquet_load_the_same(tmp_path):
    frame = pd.DataFrame({"a": range(20), "b": [i * 0.5 for i in range(20)], "label": ["x", "y"] * 10})
    frame.to_csv(tmp_path / "d.csv", index=False)
    frame.to_parquet(tmp_path / "d.parquet")
    csv = data.load_table(tmp_path / "d.csv", "label", None, "binary", "features")
    parquet = data.load_table(tmp_path / "d.parquet", "label", ["a", "b"], "binary", "features")
    assert torch.equal(csv.inputs, parquet.inputs) and torch.equal(csv.targets, parquet.targets)
    assert csv.feature_names == ["a", "b"] and csv.class_names == ["x", "y"]


def test_text_column_becomes_padded_byte_tokens(tmp_path):
    pd.DataFrame({"text": ["ab", "hello"] * 6, "label": [0, 1] * 6}).to_csv(tmp_path / "t.csv", index=False)
    ds = data.load_table(tmp_path / "t.csv", "label", None, "binary", "tokens", max_len=8)
    assert ds.inputs.shape == (12, 8) and ds.inputs[0].tolist() == ByteTokenizer().encode("ab") + [0] * 6


@pytest.mark.parametrize("content, message", [
    ("a,b,y\n" + "1,2,3\n" * 9 + "1,oops,3\n", "column 'b', row 10 (line 11): 'oops' is not a number"),
    ("a,b,y\n" + "1,,3\n" * 11, "column 'b' is empty in every row; leave it out with --features"),
    ("a,b,y\n" + "".join(f"1,id{i},3\n" for i in range(30)),
     "column 'b' has 30 distinct values in 30 rows, too many to learn from as categories"),
    ("a,b,y\n" + "1,2,\n" * 11, "target column 'y' is empty in every row"),
    ("a,b,y\n" + "1,2,3\n" * 10 + "1,2,inf\n", "column 'y', row 11 (line 12): 'inf' is not a finite number"),
])
def test_bad_values_are_located(tmp_path, content, message):
    (tmp_path / "bad.csv").write_text(content)
    with pytest.raises(data.DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        data.load_table(tmp_path / "bad.csv", "y", None, "regression", "features")
