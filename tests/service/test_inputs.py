"""Request parsing without a server: valid batches come out right, bad ones name instance and field."""

import numpy as np
import pytest

from models import ByteTokenizer
from service.errors import InvalidInput
from service.runtime.schema import FeatureSchema, TokenSchema

FEATURES = FeatureSchema(("area", "age"))
TOKENS = TokenSchema(vocab_size=260, max_len=32)


def test_feature_rows_and_objects_in_training_order():
    batch = FEATURES.parse([[1, 2.5], {"age": 4, "area": 3}])
    assert batch.dtype == np.float32 and batch.tolist() == [[1.0, 2.5], [3.0, 4.0]]


@pytest.mark.parametrize("instances, message", [
    ([[1, "2"]], "instance 0, feature 'age': expected a number, got string '2'"),
    ([[1, None]], "instance 0, feature 'age': expected a number, got null"),
    ([[1, 2], 5], "instance 1: expected a list of 2 numbers (area, age) or an object"),
    ([[1, 2], [1]], "instance 1: expected 2 numbers (area, age), got 1 values"),
    ([[1, 2], [float("nan"), 2]], "instance 1, feature 'area': nan is not a finite number"),
    ([[1, 2], {"area": 1, "age": float("-inf")}], "instance 1, feature 'age': -inf is not a finite number"),
    # finite in JSON's float64, but the engine takes float32: it would have run on inf
    ([[1, 2], [3, 1e39]], "instance 1, feature 'age': 1e+39 is beyond float32's range"),
    ([[1, 2], [3, 10**400]], "instance 1, feature 'age': an integer of 1329 bits is beyond float32's range"),
])
def test_bad_feature_values_are_located(instances, message):
    with pytest.raises(InvalidInput) as excinfo:
        FEATURES.parse(instances)
    assert message in excinfo.value.message


def test_booleans_read_as_zero_and_one():
    assert FEATURES.parse([[1, True], [False, 2]]).tolist() == [[1.0, 1.0], [0.0, 2.0]]


def test_text_and_ids_pad_to_a_length_bucket():
    batch = TOKENS.parse(["ab", [5, 6, 7, 8, 9, 10, 11, 12, 13]])
    assert batch.shape == (2, 16) and batch.dtype == np.int64  # 9 tokens -> the 16 bucket
    assert batch[0, :2].tolist() == ByteTokenizer().encode("ab") and batch[0, 2:].sum() == 0


def walked(instances: list) -> np.ndarray:
    """What parse gives by walking each instance, one at a time (the array check's reference)."""
    return TOKENS.pad([TOKENS.check_ids(i, ids) for i, ids in enumerate(instances)])


@pytest.mark.parametrize("bad, message", [
    ([5, True, 7], "instance 2, token 1: expected an integer token id, got boolean"),  # (numpy reads True as 1)
    ([5, 6.0], "instance 2, token 1: expected an integer token id, got float"),
    ([5, 260], "instance 2, token 1: id 260 is outside the vocabulary [0, 260)"),
    ([-1], "instance 2, token 0: id -1 is outside the vocabulary"),
    ([5, 2**70], "instance 2, token 1: id 1180591620717411303424 is outside the vocabulary"),  # (past int64)
    ([-2**64], "instance 2, token 0: id -18446744073709551616 is outside the vocabulary"),
    ([], "instance 2: empty sequence"),
    ([0, 0], "instance 2: sequence holds only padding (id 0)"),
    ([5] * 33, "instance 2: sequence has 33 tokens, longer than max_len 32"),
    ([[5]], "instance 2, token 0: expected an integer token id, got list"),
    ("", "instance 2: empty text"),
])
def test_many_id_lists_are_checked_as_one_array_with_the_walks_answers(bad, message):
    rows = [[5, 6, 7], list(range(1, 21))] + [[9, 8]] * 6  # ragged, many rows: the array check's case
    assert np.array_equal(TOKENS.parse(rows), walked(rows)) and TOKENS.parse(rows).shape == (8, 32)
    with pytest.raises(InvalidInput) as excinfo:
        TOKENS.parse(rows[:2] + [bad] + rows[2:])
    assert message in excinfo.value.message


def test_token_requests_merge_right_padded_to_the_longest():
    merged = TOKENS.merge([np.array([[5, 6, 0, 0, 0, 0, 0, 0]]), np.array([[7] * 16, [8] * 16])])
    assert merged.shape == (3, 16) and merged[0].tolist() == [5, 6] + [0] * 14 and merged[2].tolist() == [8] * 16


def test_id_matrix_checks_range_and_padding_rows():
    with pytest.raises(InvalidInput, match="instance 1, token 0: id -1 is outside"):
        TOKENS.check_id_matrix(np.array([[5, 6], [-1, 3]]))
    with pytest.raises(InvalidInput, match="instance 0: empty sequence"):
        TOKENS.check_id_matrix(np.array([[0, 0], [5, 0]]))


def test_a_model_trained_on_cut_texts_reads_the_first_max_len_tokens_of_longer_ones_and_counts_them():
    from prometheus_client import CollectorRegistry, Counter

    registry = CollectorRegistry()
    cutting = TokenSchema(vocab_size=260, max_len=8, truncate=True,
                          truncated=Counter("cut", "instances cut to max_len", registry=registry))
    text = "a long review, read on its first 8 bytes"
    batch = cutting.parse([text, "short", list(range(1, 20))])
    assert batch.shape == (3, 8) and batch[0].tolist() == ByteTokenizer().encode(text)[:8]
    assert batch[2].tolist() == list(range(1, 9))
    ids = np.array([list(range(1, 13)), [5] + [0] * 11])  # (2, 12): one row longer than max_len, one not
    assert cutting.check_id_matrix(ids).tolist() == [list(range(1, 9)), [5] + [0] * 7]
    assert registry.get_sample_value("cut_total") == 3
    for padded_start in ([0] * 8 + [5], np.array([[0] * 8 + [5]])):  # what the model would read is padding only
        with pytest.raises(InvalidInput, match="only padding"):
            cutting.check_id_matrix(padded_start) if isinstance(padded_start, np.ndarray) else \
                cutting.parse([padded_start])
    with pytest.raises(InvalidInput, match="input_ids has sequence length 12, longer than max_len 8"):
        TokenSchema(vocab_size=260, max_len=8).check_id_matrix(ids)  # (the built-in model's contract: refused)


def test_a_model_trained_on_several_text_columns_reads_an_object_of_them_joined_as_in_training():
    from prometheus_client import CollectorRegistry, Counter

    registry = CollectorRegistry()
    emails = TokenSchema(vocab_size=260, max_len=16, truncate=True, text_columns=("subject", "body"),
                         truncated=Counter("cut", "instances cut to max_len", registry=registry))
    tokenizer = ByteTokenizer()
    long = {"subject": "x" * 30, "body": "spam"}
    batch = emails.parse([{"subject": "hi", "body": "ok"}, {"subject": None, "body": "ok"}, long])
    assert batch[0].tolist() == tokenizer.encode_columns(["hi", "ok"]) + [0] * 11
    assert batch[1].tolist() == tokenizer.encode_columns(["", "ok"]) + [0] * 13  # null: an empty cell
    assert batch[2].tolist() == tokenizer.encode_columns(["x" * 30, "spam"], 16)  # cut as training cut it
    assert batch[2, -4:].tolist() == tokenizer.encode("spam") and registry.get_sample_value("cut_total") == 1
    assert emails.parse([batch[0].tolist()[:5]]).tolist() == [batch[0].tolist()[:8]]  # the joined ids, sent as ids
    for instance, message in [
            ("hi ok", "reads 2 text columns; send an object keyed by them \\(subject, body\\), not one string"),
            ({"subject": "hi"}, "instance 0: missing text column 'body'"),
            ({"subject": "hi", "body": "", "to": "me"}, "unknown text column 'to'; expected subject, body"),
            ({"subject": "hi", "body": 5}, "instance 0, text column 'body': expected a string .* got int"),
            ({"subject": "", "body": None}, "every text column is empty")]:
        with pytest.raises(InvalidInput, match=message):
            emails.parse([instance])
    with pytest.raises(InvalidInput, match="expected a string or a list of token ids, got object"):
        TOKENS.parse([{"text": "hi"}])  # (the built-in model has no text columns)


# ---------------------------------------------------------------- models with column kinds (models/columns.py)

def tabular(counter=None) -> FeatureSchema:
    from models.columns import Column

    columns = (Column("hp", "numeric", fill_value=90.0, missing_indicator=True),
               Column("origin", "categorical", vocabulary=("eu", "jp", "us")),
               Column("cyl", "categorical", vocabulary=("4", "6"), value_type="integer"))
    return FeatureSchema(tuple(c.name for c in columns), columns, counter)


def test_raw_values_become_numbers_codes_and_gaps():
    from prometheus_client import CollectorRegistry, Counter

    registry = CollectorRegistry()
    counter = Counter("unseen", "instances with an unseen category", registry=registry)
    batch = tabular(counter).parse([{"hp": None, "origin": "jp", "cyl": 6}, [70, "mars", "4"], [80.5, None, None],
                                    [1, "", 4], ["", "eu", ""]])
    assert batch.dtype == np.float32 and np.isnan(batch[0, 0]) and np.isnan(batch[4, 0])  # "": a gap, as in a CSV
    assert batch[:, 1:].tolist() == [[2, 2], [0, 1], [0, 0], [0, 1], [1, 0]]  # mars: unseen; None and "": missing
    assert batch[1:4, 0].tolist() == [70, 80.5, 1]
    assert registry.get_sample_value("unseen_total") == 1  # one instance held an unseen category


@pytest.mark.parametrize("instances, message", [
    ([[1, "eu", "4"], ["90", "eu", 4]], "instance 1, feature 'hp': expected a number, got string '90' (null marks "
                                        "a missing value)"),
    ([[1, 2, 4]], "instance 0, feature 'origin': expected a category name (a string) or null"),
    ([[1, "eu", 4.5]], "instance 0, feature 'cyl': expected an integer category or null"),
    ([[1, "eu", True]], "instance 0, feature 'cyl': expected an integer category or null"),
    ([[1, "eu"]], "instance 0: expected 3 values (hp, origin, cyl), got 2 values"),
    ([[1, "eu", 4], "x"], "instance 1: expected a list of 3 values (hp, origin, cyl) or an object keyed by feature "
                          "name, got string 'x'"),
    ([[float("inf"), "eu", 4]], "instance 0, feature 'hp': inf is not a finite number"),
    # JSON allows an integer of any length, and pydantic reads it whole; numpy cannot make it a float
    ([[1, "eu", 4], [-10**400, "eu", 4]], "instance 1, feature 'hp': an integer of 1329 bits is beyond float32's"),
])
def test_bad_raw_values_name_instance_and_feature(instances, message):
    with pytest.raises(InvalidInput) as error:
        tabular().parse(instances)
    assert message in str(error.value)


def test_codes_sent_as_numbers_must_lie_in_the_vocabulary():
    schema = tabular()
    assert schema.as_float32(np.array([[np.nan, 3, 0]])).shape == (1, 3)  # NaN: a gap; 3 = "us"; 0: missing
    with pytest.raises(InvalidInput, match="instance 1, feature 'origin': 4 is not a category code; codes run from "
                                           r"1 to 3 \(0: missing or unseen\)"):
        schema.as_float32(np.array([[1.0, 1, 1], [1.0, 4, 1]]))
    with pytest.raises(InvalidInput, match="feature 'cyl': 1.5 is not a category code"):
        schema.as_float32(np.array([[1.0, 1, 1.5]]))
