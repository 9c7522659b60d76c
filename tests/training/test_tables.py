"""A user's CSV or Parquet file loads as it was written, with its names, kinds, gaps and classes, and every
problem in it is located (training/tables.py)."""

from pathlib import Path

import pandas as pd
import pytest
import torch

from models import ByteTokenizer
from training import tables


def test_csv_and_parquet_load_the_same(tmp_path):
    frame = pd.DataFrame({"a": range(20), "b": [i * 0.5 for i in range(20)], "label": ["x", "y"] * 10})
    frame.to_csv(tmp_path / "d.csv", index=False)
    frame.to_parquet(tmp_path / "d.parquet")
    csv = tables.load_table(tmp_path / "d.csv", "label", None, "binary", "features")
    parquet = tables.load_table(tmp_path / "d.parquet", "label", ["a", "b"], "binary", "features")
    assert torch.equal(csv.inputs, parquet.inputs) and torch.equal(csv.targets, parquet.targets)
    assert csv.feature_names == ["a", "b"] and csv.class_names == ["x", "y"]


def test_excluded_columns_are_left_out_of_the_features(tmp_path):
    frame = pd.DataFrame({"id": [f"row{i}" for i in range(20)], "a": range(20), "empty": None, "y": range(20)})
    frame.to_csv(tmp_path / "t.csv", index=False)
    ds = tables.load_table(tmp_path / "t.csv", "y", None, "regression", "features", exclude=["id", "empty"])
    assert ds.feature_names == ["a"] and ds.inputs.shape == (20, 1)


def test_a_parquet_date_column_is_refused_not_read_as_nanoseconds(tmp_path):
    frame = pd.DataFrame({"when": pd.date_range("2024-01-01", periods=20), "a": range(20), "y": range(20)})
    frame.to_parquet(tmp_path / "t.parquet")
    with pytest.raises(tables.DataError, match="column 'when' holds dates or durations.* --exclude when"):
        tables.load_table(tmp_path / "t.parquet", "y", None, "regression", "features")
    assert tables.load_table(tmp_path / "t.parquet", "y", None, "regression", "features", exclude=["when"]) \
        .feature_names == ["a"]


def test_a_column_with_no_name_is_left_out_unless_listed(tmp_path):
    """pandas' to_csv writes the row index first, under an empty header cell: it is no feature."""
    pd.DataFrame({"a": [i * 0.5 for i in range(20)], "y": range(20)}).to_csv(tmp_path / "t.csv")  # index=True
    ds = tables.load_table(tmp_path / "t.csv", "y", None, "regression", "features")
    assert ds.feature_names == ["a"] and ds.unnamed_columns == ("Unnamed: 0",)
    listed = tables.load_table(tmp_path / "t.csv", "y", ["Unnamed: 0", "a"], "regression", "features")
    assert listed.feature_names == ["Unnamed: 0", "a"]


def test_a_semicolon_csv_loads_as_the_comma_one(tmp_path):
    """Spreadsheets where the comma is the decimal mark write `;` between fields; text may hold commas, and a
    column written with decimal points still reads as numbers."""
    frame = pd.DataFrame({"a": [i / 4 for i in range(20)], "b": [i / 8 for i in range(20)],
                          "note": ["x, y", "z"] * 10, "label": ["p", "q"] * 10})
    frame.to_csv(tmp_path / "comma.csv", index=False)
    frame.assign(a=frame["a"].map(lambda v: f"{v:g}".replace(".", ","))).to_csv(tmp_path / "semicolon.csv",
                                                                                  index=False, sep=";")
    comma = tables.load_table(tmp_path / "comma.csv", "label", None, "binary", "features")
    semicolon = tables.load_table(tmp_path / "semicolon.csv", "label", None, "binary", "features")
    assert [c.kind for c in semicolon.columns] == ["numeric", "numeric", "categorical"]
    assert torch.equal(comma.inputs, semicolon.inputs) and semicolon.columns[2].vocabulary == ("x, y", "z")


def test_a_windows_1252_csv_reads_as_its_utf_8_twin(tmp_path):
    """Excel's plain "CSV" on Windows writes Windows-1252: é is one byte that UTF-8 cannot read."""
    frame = pd.DataFrame({"city": ["Zürich", "Besançon", "Malmö"] * 5, "y": range(15)})
    frame.to_csv(tmp_path / "utf8.csv", index=False)
    frame.to_csv(tmp_path / "excel.csv", index=False, encoding="cp1252")
    utf8 = tables.load_table(tmp_path / "utf8.csv", "y", None, "regression", "features")
    excel = tables.load_table(tmp_path / "excel.csv", "y", None, "regression", "features")
    assert excel.columns[0].vocabulary == utf8.columns[0].vocabulary == ("Besançon", "Malmö", "Zürich")
    assert (utf8.encoding, excel.encoding) == ("UTF-8", "Windows-1252")
    (tmp_path / "other.csv").write_bytes("city,y\n".encode() + b"\x81\x8d,1\n" * 12)  # bytes neither can read
    with pytest.raises(tables.DataError, match="is neither UTF-8 nor Windows-1252 text; save it as UTF-8 CSV"):
        tables.load_table(tmp_path / "other.csv", "y", None, "regression", "features")


def test_text_column_becomes_padded_byte_tokens_and_empty_texts_are_left_out(tmp_path):
    texts = ["ab", "hello", None, "", "ab"] * 4
    pd.DataFrame({"text": texts, "label": [0, 1] * 10}).to_csv(tmp_path / "t.csv", index=False)
    ds = tables.load_table(tmp_path / "t.csv", "label", None, "binary", "tokens", max_len=8)
    assert ds.inputs.shape == (12, 8) and ds.inputs[0].tolist() == ByteTokenizer().encode("ab") + [0] * 6
    assert ds.dropped_rows_without_text == 8 and ds.targets.tolist()[:3] == [0, 1, 0]


def test_texts_longer_than_max_len_keep_their_first_max_len_byte_tokens_and_are_counted(tmp_path):
    pd.DataFrame({"text": ["ab", "x" * 9, "y" * 20] * 4, "label": [0, 1, 1] * 4}).to_csv(tmp_path / "t.csv",
                                                                                       index=False)
    cut = tables.load_table(tmp_path / "t.csv", "label", None, "binary", "tokens", max_len=8)
    assert cut.inputs.shape == (12, 8) and cut.truncated_texts == 8
    assert cut.inputs[2].tolist() == ByteTokenizer().encode("y" * 8)
    # a range: the smallest power of two in it that holds the longest text
    for fit_in, width in (((32, 512), 32), ((128, 512), 128)):
        loaded = tables.load_table(tmp_path / "t.csv", "label", None, "binary", "tokens", max_len=fit_in)
        assert loaded.inputs.shape == (12, width) and loaded.truncated_texts == 0
    pd.DataFrame({"text": ["ab", "é" * 300] * 6, "label": [0, 1] * 6}).to_csv(tmp_path / "t.csv", index=False)
    long = tables.load_table(tmp_path / "t.csv", "label", None, "binary", "tokens", max_len=(32, 512))
    assert long.inputs.shape == (12, 512) and long.truncated_texts == 6  # 600 bytes: cut at the range's end


def test_several_text_columns_are_joined_and_a_row_is_left_out_only_when_all_are_empty(tmp_path):
    tokenizer = ByteTokenizer()
    pd.DataFrame({"subject": ["hi", None, None, "re: " + "x" * 40] * 4, "body": ["ok", "only body", None, "yes"] * 4,
                  "label": [0, 1, 0, 1] * 4}).to_csv(tmp_path / "t.csv", index=False)
    ds = tables.load_table(tmp_path / "t.csv", "label", None, "binary", "tokens", max_len=16)
    assert ds.feature_names == ["subject", "body"] and ds.dropped_rows_without_text == 4
    assert ds.inputs[0].tolist() == tokenizer.encode_columns(["hi", "ok"]) + [0] * 11
    assert ds.inputs[1].tolist() == tokenizer.encode_columns(["", "only body"]) + [0] * 6  # (an empty subject)
    assert ds.inputs[2].tolist() == tokenizer.encode_columns(["re: " + "x" * 40, "yes"], 16)  # the body kept
    assert ds.truncated_texts == 4
    pd.DataFrame({"id": range(12), "text": ["a", "b"] * 6, "label": [0, 1] * 6}).to_csv(tmp_path / "t.csv",
                                                                                     index=False)
    with pytest.raises(tables.DataError, match=r"\['id'\] hold numbers, not text.*--exclude id"):
        tables.load_table(tmp_path / "t.csv", "label", None, "binary", "tokens", max_len=16)


def test_a_number_to_predict_is_not_taken_for_classes(tmp_path):
    pd.DataFrame({"x": range(40), "y": [i * 0.37 for i in range(40)]}).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(tables.DataError, match="'y' has 40 distinct values in 40 rows, too many classes .* regression"):
        tables.load_table(tmp_path / "t.csv", "y", None, "multiclass", "features")


@pytest.mark.parametrize("content, message", [
    ("a,b,y\n" + "1,2,3\n" * 9 + "1,oops,3\n", "column 'b', row 10 (line 11): 'oops' is not a number"),
    ("a,b,y\n" + "1,,3\n" * 11, "column 'b' is empty in every row; leave it out with --exclude b"),
    ("a,b,y\n" + "".join(f"1,id{i},3\n" for i in range(30)),
     "column 'b' has 30 distinct values in 30 rows, too many to learn from as categories .* --exclude b"),
    ("a,b,y\n" + "1,2,\n" * 11, "target column 'y' is empty in every row"),
    ("a,b,y\n" + "1,2,3\n" * 10 + "1,2,inf\n", "column 'y', row 11 (line 12): 'inf' is not a finite number"),
])
def test_bad_values_are_located(tmp_path, content, message):
    (tmp_path / "bad.csv").write_text(content)
    with pytest.raises(tables.DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        tables.load_table(tmp_path / "bad.csv", "y", None, "regression", "features")


# ---------------------------------------------------------------- column kinds, gaps, categories

def write(tmp_path, frame: pd.DataFrame) -> Path:
    frame.to_csv(tmp_path / "t.csv", index=False)
    return tmp_path / "t.csv"


def test_kinds_are_inferred_gaps_become_nan_and_strings_become_codes(tmp_path):
    frame = pd.DataFrame({"size": [1.5, None, 3.0, 4.0] * 5, "city": ["paris", "rome", None, "paris"] * 5,
                          "y": range(20)})
    ds = tables.load_table(write(tmp_path, frame), "y", None, "regression", "features")
    size, city = ds.columns
    assert (size.kind, city.kind) == ("numeric", "categorical")
    assert city.vocabulary == ("paris", "rome") and city.value_type == "string"
    assert torch.isnan(ds.inputs[1, 0]) and ds.inputs[0, 0] == 1.5
    assert ds.inputs[:4, 1].tolist() == [1.0, 2.0, 0.0, 1.0]  # code k: vocabulary[k - 1]; 0: missing


def test_integer_codes_declared_categorical_keep_integer_keys(tmp_path):
    frame = pd.DataFrame({"cylinders": [4, 6, 8, None] * 5, "y": range(20)})
    ds = tables.load_table(write(tmp_path, frame), "y", None, "regression", "features", categorical=["cylinders"])
    (column,) = ds.columns
    assert column.vocabulary == ("4", "6", "8") and column.value_type == "integer"  # not '4.0': read as floats
    inferred = tables.load_table(write(tmp_path, frame), "y", None, "regression", "features")
    assert inferred.columns[0].kind == "numeric"


def test_rows_without_a_target_are_left_out_and_counted_and_messages_keep_file_rows(tmp_path):
    frame = pd.DataFrame({"x": [1.0] * 12, "y": [1.0, None] + [2.0] * 10})
    ds = tables.load_table(write(tmp_path, frame), "y", None, "regression", "features")
    assert len(ds) == 11 and ds.dropped_rows == 1
    frame["x"] = [1.0] * 5 + ["oops"] + [1.0] * 6  # the 7th line, after the header and the dropped row's
    with pytest.raises(tables.DataError, match=r"column 'x', row 6 \(line 7\): 'oops' is not a number"):
        tables.load_table(write(tmp_path, frame), "y", None, "regression", "features")


def test_fit_columns_keeps_the_training_split_categories_and_flags_its_gaps(tmp_path):
    frame = pd.DataFrame({"size": [1.0, 2.0, None, 4.0], "city": ["paris", "rome", "oslo", "rome"], "y": range(4)})
    ds = tables.load_table(write(tmp_path, frame.loc[frame.index.repeat(3)]), "y", None, "regression", "features")
    train, val = ds.subset(torch.tensor([0, 3, 9])), ds.subset(torch.tensor([6, 7, 8]))  # oslo only in validation
    train, val = tables.fit_columns(train, val)
    size, city = train.columns
    assert city.vocabulary == ("paris", "rome")
    assert train.inputs[:, 1].tolist() == [1.0, 2.0, 2.0]
    assert val.inputs[:, 1].tolist() == [0.0, 0.0, 0.0]  # oslo: unseen in training, slot 0
    assert size.missing_indicator is False  # the gap lies in validation rows only
    assert tables.fit_columns(val, train)[0].columns[0].missing_indicator is True
