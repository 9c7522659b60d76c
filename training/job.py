"""One training job end to end: settings -> data -> train -> export + parity -> model store.

Nothing reaches the store unless every step succeeded; all files are built in a temporary
directory first and published with one rename (training/store.py).
"""

import contextlib
import tempfile
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

import models
from models.manifest import breaking_change
from training import data as datasets
from training import distributed, tables
from training.artifacts import build_artifacts
from training.choices import Choice, choose, max_len_range, text_choices
from training.loop import TrainConfig, TrainResult, train
from training.recipes import RECIPES
from training.report import choices_table, metrics_table, print_table
from training.solve import solve_least_squares
from training.store import check_name, clean_staging, has_model, save_model, served_manifest, stored_manifests

DRY_RUN_ROWS = 256


@dataclass
class JobOptions:
    model: str
    name: str | None = None
    data: Path | None = None
    target: str | None = None
    features: list[str] | None = None
    exclude: list[str] | None = None
    """Columns left out of the features (by default every column but the target)."""
    categorical: list[str] | None = None
    """Feature columns to read as categories (integer codes among them); others are inferred."""
    numeric: list[str] | None = None
    """Feature columns to read as numbers whatever they hold."""
    task: str | None = None
    config_file: Path | None = None
    overrides: dict[str, Any] | None = None
    """TrainConfig fields given as flags (--epochs, --lr, ...); they win over the TOML file."""
    run_dir: Path | None = None
    resume: bool = False
    dry_run: bool = False
    if_missing: bool = False


def read_toml(path: Path) -> dict[str, dict[str, Any]]:
    """--config FILE.toml with optional [model], [train] and [data] tables."""
    if not path.is_file():
        raise ValueError(f"{path}: config file not found")
    try:
        values = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from None
    unknown = sorted(set(values) - {"model", "train", "data"})
    if unknown:
        raise ValueError(f"{path}: unknown table(s) {unknown}; use [model], [train] and [data]")
    not_tables = sorted(name for name, table in values.items() if not isinstance(table, dict))
    if not_tables:
        raise ValueError(f"{path}: {', '.join(not_tables)} must be a table ([{not_tables[0]}] on a line of its own, "
                         "then key = value lines), not a value")
    data = values.get("data", {})
    data_keys = sorted(set(data) - {"path", "target", "features", "exclude", "categorical", "numeric", "task"})
    if data_keys:
        raise ValueError(f"{path}: unknown [data] key(s) {data_keys}; use path, target, features, exclude, "
                         "categorical, numeric, task")
    problems = [f"{key} must be a string, got {data[key]!r}" for key in ("path", "target", "task")
                if key in data and not isinstance(data[key], str)]
    for key in ("features", "exclude", "categorical", "numeric"):
        names = data.get(key)
        if names is not None and not (isinstance(names, list) and all(isinstance(f, str) for f in names)):
            problems.append(f"{key} must be a list of column names, got {names!r}")
    if problems:
        raise ValueError(f"{path}: invalid [data]: " + "; ".join(problems))
    return values


def train_config(recipe: dict, from_file: dict, overrides: dict) -> TrainConfig:
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(from_file) - known)
    if unknown:
        raise ValueError(f"unknown [train] field(s) {unknown}; known fields are {sorted(known)}")
    return TrainConfig(**{**recipe, **from_file, **{k: v for k, v in overrides.items() if v is not None}})


def load_dataset(opts: JobOptions, data_table: dict, task: str | None,
                 max_len: int | tuple[int, int]) -> datasets.Dataset:
    recipe = RECIPES[opts.model]
    path = opts.data or data_table.get("path")
    if path is None:
        if task not in (None, recipe.task):
            raise ValueError(f"built-in data for {opts.model} is a {recipe.task} task; --task {task} needs --data")
        dataset = datasets.BUILTIN[recipe.dataset](seed=0)
        return dataset
    target = opts.target or data_table.get("target")
    if not target:
        raise ValueError("--data needs --target naming the column to predict")
    features = opts.features or data_table.get("features")
    if task is None:
        task = "regression" if models.input_kind(opts.model) == "features" else "multiclass"
    dataset = tables.load_table(Path(path), target, features, task, models.input_kind(opts.model), max_len,
                                categorical=opts.categorical or data_table.get("categorical"),
                                numeric=opts.numeric or data_table.get("numeric"),
                                exclude=opts.exclude or data_table.get("exclude"))
    if dataset.dropped_rows:
        print(f"{path}: left out {dataset.dropped_rows} row(s) whose target {target!r} is empty")
    if dataset.encoding != "UTF-8":
        print(f"{path}: not UTF-8, read as {dataset.encoding} (what Excel's plain CSV writes on Windows)")
    if dataset.unnamed_columns and not features:
        print(f"{path}: left out column(s) {list(dataset.unnamed_columns)}, with no name in the header (a row index, "
              "as pandas' to_csv writes one); name it in the header, or list it in --features, to use it")
    if dataset.dropped_rows_without_text:
        print(f"{path}: left out {dataset.dropped_rows_without_text} row(s) whose text is empty "
              f"({', '.join(map(repr, dataset.feature_names))})")
    if dataset.truncated_texts:  # (None or 0: none cut)
        width, texts = dataset.inputs.shape[1], ", ".join(map(repr, dataset.feature_names))
        how = f"their first {width}" if len(dataset.feature_names) == 1 else \
            f"them cut to {width}, the longest column first"
        print(f"{path}: {dataset.truncated_texts} of {len(dataset)} text(s) in {texts} are longer "
              f"than max_len {width} byte tokens: the model reads {how}, in training and in the service")
    if task == "multiclass" and dataset.class_names and len(dataset.class_names) == 2:
        dataset.task = "binary"
    return dataset


def check_task(model_name: str, task: str) -> None:
    allowed = {"regression": ("regression",), "mlp": models.TASKS}.get(model_name, ("binary", "multiclass"))
    if task not in allowed:
        raise ValueError(f"model {model_name!r} cannot do --task {task}; it supports {', '.join(allowed)}")


def model_config(model_name: str, dataset: datasets.Dataset, recipe: dict, from_file: dict):
    """Recipe < TOML [model] < what the data fixes (feature and output counts)."""
    derived: dict[str, Any] = {}
    if model_name in ("regression", "mlp"):
        columns = dataset.columns or []
        derived = {"n_features": dataset.inputs.shape[1],
                   "categorical": [j for j, c in enumerate(columns) if c.is_categorical],
                   "cardinalities": [len(c.vocabulary) for c in columns if c.is_categorical],
                   "missing_indicators": [j for j, c in enumerate(columns) if c.missing_indicator],
                   ("n_targets" if model_name == "regression" else "n_outputs"): dataset.n_outputs}
    else:
        derived = {"num_classes": dataset.n_outputs}
    config = models.make_config(model_name, {**recipe, **from_file, **derived})
    if models.input_kind(model_name) == "tokens":  # what [model] says must hold what the data holds
        largest, width = int(dataset.inputs.max()), dataset.inputs.shape[1]
        if largest >= config.vocab_size:
            raise ValueError(f"[model] vocab_size {config.vocab_size} is too small for the data, which holds token id "
                             f"{largest}; ids run from 0 to vocab_size - 1")
        if width > config.max_len:
            raise ValueError(f"[model] max_len {config.max_len} is shorter than the data's sequences ({width} tokens)")
    return config


def fit(opts: JobOptions, model_cfg, train_split: datasets.Dataset, val_split: datasets.Dataset,
        config: TrainConfig, runtime: distributed.Runtime, run_dir: Path) -> TrainResult:
    """Train (or solve) on the training split, measured on the validation split; with `refit`, train again on all
    rows for the epoch count the validation score chose (loop.is_better). The metrics stay those measured on
    unseen rows."""
    def build():
        torch.manual_seed(config.seed)  # before building: the initial weights are part of "same seed, same model"
        return models.build_model(opts.model, model_cfg)

    if config.solver == "lstsq":
        result = solve_least_squares(build(), train_split, val_split)
    else:
        result = train(opts.model, build(), train_split, val_split, config, runtime, run_dir, resume=opts.resume)
    if not config.refit:
        return result
    everything = train_split.merged(val_split)
    if config.solver == "lstsq":
        final = solve_least_squares(build(), everything, val_split)
    else:
        refit_config = TrainConfig(**{**vars(config), "epochs": max(1, result.best_epochs)})
        final = train(opts.model, build(), everything, val_split, refit_config, runtime, run_dir / "refit",
                      select_best=False)
    return TrainResult(model=final.model, metrics=result.metrics, best_epochs=result.best_epochs,
                       refit_epochs=final.epochs_run, history=result.history, epochs_run=result.epochs_run,
                       samples_per_second=result.samples_per_second,
                       steady_samples_per_second=result.steady_samples_per_second,
                       optimizer_state=final.optimizer_state)


def publish(opts: JobOptions, name: str, task: str, result: TrainResult, train_split: datasets.Dataset,
            val_split: datasets.Dataset, config: TrainConfig, runtime: distributed.Runtime,
            choices: list[Choice]) -> str | None:
    """Rank 0's part: export, prove parity and save to the model store (a dry run stops before saving)."""
    with tempfile.TemporaryDirectory(prefix=f"modelserve-{name}-") as tmp:
        manifest = build_artifacts(Path(tmp), opts.model, result, train_split, val_split, config,
                                   str(runtime.device), runtime.world_size, choices)
        extra = {"epochs": str(result.epochs_run), **({"refit epochs (all rows)": str(result.refit_epochs)}
                                                      if result.refit_epochs else {}),
                 "samples/s": f"{result.samples_per_second:,.0f}",
                 "parity max diff": f"{manifest['parity']['max_abs_diff']:.2e}"}
        if choices:
            print_table(choices_table(f"{name}: chosen for this data", choices))
        previous, change = served_manifest(name), None
        with contextlib.suppress(KeyError):  # (a manifest of another layout: nothing to compare with)
            change = previous and breaking_change(previous[1], manifest)
        if change:  # (said before saving: a server watching the store will keep serving the previous version)
            print(f"{name}: this version would break the clients of {previous[0]} ({change}); servers keep serving "
                  f"that one until this one is promoted (`modelserve promote {name}:VERSION`, the version saved below)")
        if opts.dry_run:
            print_table(metrics_table(f"{name} (dry run)", result.metrics, extra))
            print(f"dry run: {name} trained, exported and parity-checked; nothing saved to the model store")
            return None
        clean_staging()
        labels = {"model": opts.model, "task": task}
        metadata = {"task": task, manifest["primary_metric"]: result.metrics[manifest["primary_metric"]]}
        tag = save_model(name, Path(tmp), labels, metadata)
    print_table(metrics_table(f"{tag}", result.metrics, extra))
    print(f"saved {tag}")
    return tag


def run(opts: JobOptions) -> str | None:
    """Run the job; return the saved tag (None for a dry run or a skipped --if-missing)."""
    models.input_kind(opts.model)  # unknown model names fail here, before any work
    name = opts.name or opts.model
    check_name(name)
    if opts.if_missing and not opts.dry_run and has_model(name):
        print(f"{name}: already in the model store, not retrained (--if-missing)")
        return None
    recipe = RECIPES[opts.model]
    toml = read_toml(opts.config_file) if opts.config_file else {}
    config = train_config(recipe.train, toml.get("train", {}), opts.overrides or {})
    user_set = set(toml.get("train", {})) | {k for k, v in (opts.overrides or {}).items() if v is not None}
    if config.solver == "lstsq" and opts.model != "regression":
        raise ValueError(f"solver lstsq solves linear regression only; {opts.model} trains with solver gradient")
    task = opts.task or toml.get("data", {}).get("task")
    if task is not None and task not in models.TASKS:
        raise ValueError(f"--task must be one of {', '.join(models.TASKS)}, got {task!r}")
    if task is not None:
        check_task(opts.model, task)  # before reading any data: the cheapest problem to report
    user_data = bool(opts.data or toml.get("data", {}).get("path"))
    model_table = dict(toml.get("model", {}))
    fit_max_len = user_data and "max_len" not in model_table  # (a user's texts: max_len chosen for the longest)
    max_len = (max_len_range(stored_manifests(name)) if fit_max_len
               else {**recipe.model, **model_table}.get("max_len", 64))
    dataset = load_dataset(opts, toml.get("data", {}), task, max_len)
    check_task(opts.model, dataset.task)
    model_choices = []
    if user_data and models.input_kind(opts.model) == "tokens":
        model_choices = text_choices(opts.model, dataset, max_len, model_table)
        model_table.update({c.setting: c.value for c in model_choices})
    if opts.dry_run:
        dataset = dataset.subset(torch.arange(min(len(dataset), DRY_RUN_ROWS)))
    train_split, val_split = tables.fit_columns(*dataset.split(config.val_fraction, config.seed))
    model_cfg = model_config(opts.model, train_split, recipe.model, model_table)
    config, choices = choose(opts.model, train_split, config, user_set, user_data)
    choices += model_choices
    if opts.dry_run:
        config = TrainConfig(**{**vars(config), "epochs": 1})

    runtime = distributed.start(config.device)
    try:
        run_dir = opts.run_dir or Path("runs") / name
        if opts.resume and not (run_dir / "last.pt").is_file():
            raise ValueError(f"--resume: no checkpoint at {run_dir / 'last.pt'}")
        result = fit(opts, model_cfg, train_split, val_split, config, runtime, run_dir)
        tag = None
        if runtime.is_main:  # rank 0 alone exports and writes
            tag = publish(opts, name, dataset.task, result, train_split, val_split, config, runtime, choices)
        # Ranks leave together. A rank that tears its gloo group down while rank 0 is still at work can die in the
        # teardown ("terminate called without an active exception", SIGABRT), and torchrun then fails the whole
        # job: the two-rank test did so once in CI, and a minimal two-rank DDP script whose rank 1 left first did
        # in 5 of 40 runs on a busy 2-core machine; with a barrier before leaving, 0 of 40.
        distributed.barrier(runtime)
        return tag
    finally:
        distributed.stop(runtime)
