"""Real tabular data, as a user brings it: trained by `modelserve train`, served, and scored through the service.

The sets ship with test dependencies (benchmarks/real_data.py): scikit-learn's wine and iris (digits in `make
bench`), and vega_datasets' cars, with gaps (Horsepower), a categorical column (Origin) and rows without a target,
barley (two text columns) and seattle-weather (five imbalanced classes); cars and barley also with the MLP.
"""

import numpy as np
import pandas as pd
import pytest
import tritonclient.http as tritonclient

from benchmarks import real_data
from tests.servers import start
from training.cli import main

pytestmark = pytest.mark.slow
SUITE_SETS = [name for name in real_data.SETS if name not in real_data.BENCH_ONLY]
CAR = {"Cylinders": 4, "Displacement": 97.0, "Horsepower": None, "Weight_in_lbs": 2130, "Acceleration": 14.5,
       "Year": 1980, "Origin": "Japan"}


def reviews(tmp) -> None:
    """A user's free text, longer than the model reads, made up (the real text set, SpamAssassin's, is `make
    bench`'s: 5 minutes to train), trained with a max_len of 32 bytes, so every text is cut in training as in the
    service. The first word says the verdict."""
    rng = np.random.default_rng(0)
    words = ["fine", "slow", "quiet", "late", "kind", "cold"]
    texts = [f"{'good' if y else 'poor'} stay, " + " ".join(rng.choice(words, 12)) for y in [0, 1] * 120]
    pd.DataFrame({"review": texts, "verdict": ["no", "yes"] * 120}).to_csv(tmp / "reviews.csv", index=False)
    (tmp / "reviews.toml").write_text("[model]\nmax_len = 32\nd_model = 32\nn_heads = 2\nn_layers = 1\nd_ff = 32\n")
    assert main(["train", "transformer", "--name", "reviews", "--data", str(tmp / "reviews.csv"), "--target",
                 "verdict", "--config", str(tmp / "reviews.toml"), "--epochs", "30", "--run-dir",
                 str(tmp / "reviews")]) == 0


def email_rows(seed: int, rows: int) -> pd.DataFrame:
    """Two text columns: a subject of 40 to 60 bytes of noise, and a short body whose first word says the label."""
    rng = np.random.default_rng(seed)
    noise = ["re:", "fwd:", "list", "news", "info", "weekly", "digest"]
    subjects = [" ".join(rng.choice(noise, 12))[:rng.integers(40, 61)] for _ in range(rows)]
    labels = rng.choice(["ham", "spam"], rows)
    bodies = [f"{'win' if label == 'spam' else 'see'} {rng.choice(['it', 'this', 'now'])}" for label in labels]
    return pd.DataFrame({"subject": subjects, "body": bodies, "label": labels})


def emails(tmp) -> None:
    """Trained with a max_len of 32 bytes: cut as one text, every body would be lost behind its subject; the longest
    column is cut first, so the body is read whole, in training as in the service."""
    email_rows(0, 240).to_csv(tmp / "emails.csv", index=False)
    assert main(["train", "transformer", "--name", "emails", "--data", str(tmp / "emails.csv"), "--target", "label",
                 "--config", str(tmp / "reviews.toml"), "--epochs", "30", "--run-dir", str(tmp / "emails")]) == 0


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """Every set split 75/25, trained with the defaults into the session store, and one server serving them (and two
    text models, `reviews` and `emails`)."""
    tmp = tmp_path_factory.mktemp("real")
    splits = {}
    for name in SUITE_SETS:
        train, test = real_data.split(name)
        train.to_csv(tmp / f"{name}.csv", index=False)
        assert main([*real_data.train_command(name, tmp / f"{name}.csv"), "--run-dir", str(tmp / name)]) == 0
        splits[name] = (train, test)
    reviews(tmp)
    emails(tmp)
    server = start(tmp_path_factory, "real-server", workers=1,
                   models=",".join(f"{n}:latest" for n in [*SUITE_SETS, "reviews", "emails"]))
    yield server, splits
    server.stop()


def post(server, path: str, body: dict):
    import httpx

    return httpx.post(server.url + path, json=body, timeout=30)


@pytest.mark.parametrize("name", SUITE_SETS)
def test_served_model_scores_at_least_scikit_learn_on_held_out_rows(real, name):
    server, splits = real
    train, test = splits[name]
    served = real_data.served_score(server.url, name, test)
    baseline = real_data.sklearn_score(name, train, test)
    assert served >= baseline - real_data.TOLERANCE, f"{name}: modelserve {served:.4f}, scikit-learn {baseline:.4f}"


def test_metadata_shows_each_column_its_kind_and_vocabulary(real):
    import httpx

    server, _ = real
    v1 = httpx.get(f"{server.url}/v1/models/cars").json()
    columns = {c["name"]: c for c in v1["columns"]}
    assert columns["Origin"]["kind"] == "categorical" and columns["Origin"]["vocabulary"] == ["Europe", "Japan", "USA"]
    assert columns["Horsepower"]["kind"] == "numeric" and columns["Horsepower"]["missing_indicator"] is True
    assert columns["Weight_in_lbs"]["missing_indicator"] is False  # (no gaps in training: no indicator)
    v2 = httpx.get(f"{server.url}/v2/models/cars").json()
    tensors = {t["name"]: t for t in v2["inputs"]}  # a model with categories lists a tensor per column
    assert list(tensors) == list(columns) and "features" not in tensors
    assert tensors["Origin"]["datatype"] == "BYTES" and tensors["Horsepower"]["datatype"] == "FP32"
    assert tensors["Origin"]["parameters"]["vocabulary"] == ["Europe", "Japan", "USA"]


def test_manifest_records_what_was_chosen_and_why(real):
    import json
    from pathlib import Path

    import bentoml

    cars = json.loads((Path(bentoml.models.get("cars:latest").path) / "manifest.json").read_text())
    wine = json.loads((Path(bentoml.models.get("wine:latest").path) / "manifest.json").read_text())
    assert {c["setting"]: c["value"] for c in cars["choices"]} == {"solver": "lstsq", "refit": True}
    assert {"weight_decay", "refit", "epochs"} <= {c["setting"] for c in wine["choices"]}
    assert all(c["why"] for c in cars["choices"] + wine["choices"])
    assert cars["data"]["dropped_rows_without_target"] == 8
    # the parity check covered rows with every value missing or unseen, on both formats
    cases = {(r["format"], r["case"]) for r in cars["parity"]["results"]}
    assert ("onnx", "batch=7 every other row missing or unseen") in cases
    assert ("torchscript", "batch=1 every other row missing or unseen") in cases


def test_gaps_and_unseen_categories_are_answered_and_unseen_ones_counted(real):
    import httpx

    server, _ = real

    def unseen() -> float:
        text = httpx.get(f"{server.url}/metrics").text
        line = next((row for row in text.splitlines()
                     if row.startswith("modelserve_inputs_outside_training_range_total{")
                     and 'feature="unseen_category"' in row and 'model="cars"' in row), None)
        return float(line.rsplit(" ", 1)[1]) if line else 0.0

    before = unseen()
    rows = [CAR, {**CAR, "Origin": "Mars"}, {**CAR, "Origin": None}, {**CAR, "Origin": "Atlantis", "Year": None}]
    reply = post(server, "/v1/models/cars:predict", {"instances": rows})
    assert reply.status_code == 200, reply.text
    known, mars, missing, atlantis = reply.json()["predictions"]
    assert mars == pytest.approx(missing)  # an unseen category and a missing one share slot 0
    assert known != pytest.approx(mars)
    assert unseen() == before + 2  # Mars and Atlantis; a missing category is not unseen


def test_a_gap_reads_as_the_training_median_null_and_nan_alike(real):
    """Weight_in_lbs had no gaps in training, so no indicator: a gap answers exactly as its fill value does."""
    import httpx

    server, _ = real
    fill = next(c["fill_value"] for c in httpx.get(f"{server.url}/v1/models/cars").json()["columns"]
                if c["name"] == "Weight_in_lbs")
    rows = [{**CAR, "Weight_in_lbs": None}, {**CAR, "Weight_in_lbs": fill}]
    gap, filled = post(server, "/v1/models/cars:predict", {"instances": rows}).json()["predictions"]
    assert gap == pytest.approx(filled, rel=1e-6)
    body = ('{"instances": [[4, 97.0, 88.0, NaN, 14.5, 1980, "Japan"], [4, 97.0, 88.0, null, 14.5, 1980, "Japan"]]}')
    nan, null = httpx.post(f"{server.url}/v1/models/cars:predict", content=body, timeout=30).json()["predictions"]
    assert nan == pytest.approx(null)


@pytest.mark.parametrize("body, fragment", [
    ({"instances": [{**CAR, "Horsepower": "95"}]}, "instance 0, feature 'Horsepower': expected a number"),
    ({"instances": [{**CAR, "Origin": 3}]}, "instance 0, feature 'Origin': expected a category name (a string)"),
    ({"instances": [[4, 97.0, None, 2130, 14.5, 1980]]}, "instance 0: expected 7 values (Cylinders, "),
    ({"instances": [{**CAR, "Colour": "red"}]}, "instance 0: unknown feature 'Colour'"),
])
def test_bad_values_get_a_400_naming_the_instance_and_feature(real, body, fragment):
    server, _ = real
    reply = post(server, "/v1/models/cars:predict", body)
    assert reply.status_code == 400 and fragment in reply.json()["error"], reply.text
    assert post(server, "/v1/models/cars:predict", {"instances": [CAR]}).status_code == 200


def test_v2_features_tensor_refuses_a_code_outside_the_vocabulary(real):
    server, _ = real
    row = [4, 97.0, 88.0, 2130, 14.5, 1980, 4]  # Origin's codes run 0..3
    reply = post(server, "/v2/models/cars/infer", {"inputs": [{"name": "features", "shape": [1, 7], "datatype": "FP32",
                                                              "data": row}]})
    assert reply.status_code == 400 and "feature 'Origin': 4 is not a category code" in reply.json()["error"]


@pytest.mark.parametrize("binary", [False, True])
def test_stock_tritonclient_sends_one_tensor_per_column(real, binary):
    """Categories travel as BYTES [N] by name, numbers as FP32 [N]; the answers equal v1's for the same rows. A gap
    travels as NaN in binary form (JSON has no NaN, so tritonclient's JSON form carries rows without gaps)."""
    server, _ = real
    rows = [{**CAR, "Horsepower": 65.0}, {**CAR, "Horsepower": 150.0, "Origin": "USA", "Cylinders": 8},
            {**CAR, "Horsepower": 88.0, "Origin": "Mars"}]
    if binary:
        rows.append(CAR)  # Horsepower missing
    expected = post(server, "/v1/models/cars:predict", {"instances": rows}).json()["predictions"]
    client = tritonclient.InferenceServerClient(server.url.removeprefix("http://"))
    tensors = []
    for column in CAR:
        values = [row[column] for row in rows]
        if column == "Origin":
            tensor = tritonclient.InferInput(column, [len(rows)], "BYTES")
            tensor.set_data_from_numpy(np.array(values, dtype=object), binary_data=binary)
        else:
            tensor = tritonclient.InferInput(column, [len(rows)], "FP32")
            tensor.set_data_from_numpy(np.array([np.nan if v is None else v for v in values], dtype=np.float32),
                                       binary_data=binary)
        tensors.append(tensor)
    result = client.infer("cars", tensors)
    assert result.as_numpy("predictions")[:, 0] == pytest.approx(expected, rel=1e-5)


def test_examples_command_prints_a_request_the_service_answers(real):
    import json

    from training.examples import curl_examples

    server, _ = real
    lines = curl_examples(server.url)
    for model in ("cars", "emails"):  # (a gap; an empty text column)
        curl = lines[lines.index(next(line for line in lines if line.startswith(f"# {model}:"))) + 1]
        body = json.loads(curl.split("-d '", 1)[1].rstrip("'"))
        assert any(value is None for value in body["instances"][-1].values()), model
        reply = post(server, f"/v1/models/{model}:predict", body)
        assert reply.status_code == 200 and len(reply.json()["predictions"]) == len(body["instances"]), model


def test_a_text_longer_than_max_len_is_read_on_its_first_bytes_as_in_training(real):
    import httpx

    server, _ = real

    def truncated() -> float:
        text = httpx.get(f"{server.url}/metrics").text
        line = next((row for row in text.splitlines()
                     if row.startswith('modelserve_truncated_instances_total{model="reviews"}')), None)
        return float(line.rsplit(" ", 1)[1]) if line else 0.0

    before = truncated()
    long = "good stay, " + "quiet kind " * 20  # 231 bytes
    reply = post(server, "/v1/models/reviews:predict", {"instances": [long, long[:32]]})
    assert reply.status_code == 200, reply.text
    whole, first_bytes = reply.json()["predictions"]
    assert whole == first_bytes  # the same 32 bytes read
    assert truncated() == before + 1
    spec = httpx.get(f"{server.url}/v2/models/reviews").json()["inputs"][0]["parameters"]
    assert spec["max_len"] == 32 and spec["truncate"] is True


def test_the_benchmark_scores_a_text_set_through_the_service_and_with_tf_idf(real, monkeypatch):
    """benchmarks/real_data.py's text path (spam, in `make bench`): texts go to the service as strings, and
    scikit-learn's baseline is TF-IDF + LogisticRegression. Here on made-up reviews like those `reviews` learnt."""
    server, _ = real
    monkeypatch.setitem(real_data.SETS, "made-up-reviews", (None, "verdict", "transformer", "binary"))
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"review": [f"{'good' if i % 2 else 'poor'} stay, " + " ".join(rng.choice(["kind", "cold"], 9))
                                     for i in range(150)], "verdict": ["yes" if i % 2 else "no" for i in range(150)]})
    train, test = frame[:100], frame[100:]
    assert real_data.served_score(server.url, "made-up-reviews", test, model_name="reviews") >= 0.9
    assert real_data.sklearn_score("made-up-reviews", train, test) == 1.0  # the first word says it


@pytest.mark.parametrize("binary", [False, True])
def test_a_model_of_two_text_columns_reads_them_by_name_in_v1_and_v2_alike(real, binary):
    """An object per instance in v1, a BYTES tensor per column from stock tritonclient, and the joined ids as
    input_ids all get the same answers; held out, the body (past the 32 bytes a plain cut would keep) is read."""
    import httpx

    from models import ByteTokenizer

    server, _ = real
    held_out = email_rows(1, 40)
    rows = held_out[["subject", "body"]].to_dict("records")
    rows[0]["subject"] = None  # an empty cell
    reply = post(server, "/v1/models/emails:predict", {"instances": rows})
    assert reply.status_code == 200, reply.text
    predictions = reply.json()["predictions"]
    labels = np.array([p["label"] for p in predictions])
    assert (labels == held_out["label"].to_numpy()).mean() >= 0.9
    spam = np.array([p["probabilities"]["spam"] for p in predictions])

    client = tritonclient.InferenceServerClient(server.url.removeprefix("http://"))
    tensors = []
    for column in ("subject", "body"):
        tensor = tritonclient.InferInput(column, [len(rows)], "BYTES")
        tensor.set_data_from_numpy(np.array([row[column] or "" for row in rows], dtype=object), binary_data=binary)
        tensors.append(tensor)
    by_column = client.infer("emails", tensors).as_numpy("probabilities")[:, 1]
    assert by_column == pytest.approx(spam, abs=1e-6)
    ids = [ByteTokenizer().encode_columns([row["subject"] or "", row["body"]], 32) for row in rows]
    padded = [each + [0] * (32 - len(each)) for each in ids]
    reply = post(server, "/v2/models/emails/infer", {"inputs": [
        {"name": "input_ids", "datatype": "INT64", "shape": [len(rows), 32], "data": padded}]})
    assert np.array(reply.json()["outputs"][0]["data"])[1::2] == pytest.approx(spam, abs=1e-6)
    inputs = httpx.get(f"{server.url}/v2/models/emails").json()["inputs"]
    assert [(i["name"], i["datatype"]) for i in inputs] == [("subject", "BYTES"), ("body", "BYTES")]
    refused = post(server, "/v1/models/emails:predict", {"instances": ["one string"]})
    assert refused.status_code == 400 and "subject, body" in refused.json()["error"]
