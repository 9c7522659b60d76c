"""What the job chooses for the data it is given: least squares solved exactly, small-data settings for the MLP,
classes unweighted, max_len, n-gram embeddings and a refit for a user's texts, each only where the user did not set
it."""

import numpy as np
import pytest
import torch

import models
from training.choices import NGRAM_BUCKETS, choose, max_len_range, text_choices
from training.data import Dataset
from training.loop import TrainConfig, balanced_class_weights
from training.solve import solve_least_squares


def regression_data(n: int, seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)) * [1.0, 100.0, 0.01]  # (n, 3) wildly different scales
    y = x @ [2.0, -0.03, 300.0] + 5 + rng.normal(size=n)
    return Dataset("t", "regression", torch.tensor(x, dtype=torch.float32),
                   torch.tensor(y, dtype=torch.float32).unsqueeze(1), ["a", "b", "c"], ["y"])


def test_least_squares_reaches_the_exact_optimum():
    train, val = regression_data(200, 0), regression_data(50, 1)
    model = models.build_model("regression", models.make_config("regression", {"n_features": 3}))
    result = solve_least_squares(model, train, val)
    x, y = train.inputs.double().numpy(), train.targets.double().numpy()
    design = np.column_stack([x, np.ones(len(x))])
    coefficients = np.linalg.lstsq(design, y, rcond=None)[0]
    with torch.no_grad():
        predicted = result.model(val.inputs).double().numpy()
    expected = np.column_stack([val.inputs.double().numpy(), np.ones(len(val))]) @ coefficients
    np.testing.assert_allclose(predicted, expected, rtol=1e-4, atol=1e-3)
    assert result.metrics["r2"] > 0.9


def classes(counts: list[int]) -> Dataset:
    targets = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    return Dataset("t", "multiclass", torch.zeros(len(targets), 2), targets, ["a", "b"], ["y"],
                   [str(c) for c in range(len(counts))])


def test_small_data_gets_the_mlp_settings_each_saying_why_and_imbalanced_classes_stay_unweighted():
    config, chosen = choose("mlp", classes([90, 10]), TrainConfig(), set(), user_data=True)
    settings = {c.setting: c.value for c in chosen}
    assert settings == {"weight_decay": 0.1, "batch_size": 8, "epochs": 200, "patience": 30, "refit": True}
    assert choose("mlp", classes([3000, 2000]), TrainConfig(), set(), user_data=True)[0].batch_size == 32
    assert (config.weight_decay, config.refit, config.class_weight) == (0.1, True, "none")  # as scikit-learn's
    assert all(c.why for c in chosen) and "100 training rows" in chosen[0].why


def test_what_the_user_set_is_kept_and_built_in_data_keeps_its_recipe():
    config, chosen = choose("mlp", classes([50, 50]), TrainConfig(weight_decay=0.0, epochs=7),
                            {"weight_decay", "epochs"}, user_data=True)
    assert (config.weight_decay, config.epochs) == (0.0, 7)
    assert choose("mlp", classes([50, 50]), TrainConfig(), set(), user_data=False)[1] == []
    config, chosen = choose("regression", classes([5, 5]), TrainConfig(), {"solver"}, user_data=True)
    assert config.solver == "gradient" and [c.setting for c in chosen] == ["refit"]


def test_max_len_is_fitted_no_shorter_than_any_stored_versions():
    assert max_len_range([]) == (32, 512)
    assert max_len_range([{"inputs": [{"max_len": 128}]}]) == (128, 512)  # its clients' texts must still fit
    assert max_len_range([{"inputs": [{"max_len": 64}]}, {"inputs": [{"max_len": 1024}]}]) == (1024, 1024)  # (set
    # under [model] before, in any version: one held back, or loaded by version, has clients too)
    assert max_len_range([{"format_version": 0}]) == (32, 512)  # a manifest of another layout


def test_balanced_class_weights_match_scikit_learn():
    from sklearn.utils.class_weight import compute_class_weight

    targets = torch.tensor([0] * 6 + [1] * 3 + [2])
    expected = compute_class_weight("balanced", classes=np.arange(3), y=targets.numpy())
    assert balanced_class_weights(targets, 3).tolist() == pytest.approx(expected.tolist())


def test_a_users_texts_get_a_fitted_max_len_and_the_transformer_n_gram_embeddings():
    texts = Dataset("t", "binary", torch.tensor([[5, 6, 7, 0], [5, 0, 0, 0]]), torch.tensor([0, 1]), ["text"],
                    ["y"], ["a", "b"], truncated_texts=0)
    chosen = {c.setting: c.value for c in text_choices("transformer", texts, (4, 512), {})}
    assert chosen == {"max_len": 4, "ngram_buckets": NGRAM_BUCKETS}
    assert [c.setting for c in text_choices("transformer", texts, 64, {"max_len": 64, "ngram_buckets": 0})] == []
    assert [c.setting for c in text_choices("bag_of_tokens", texts, (4, 512), {})] == ["max_len"]
    # Fewer than 10,000 texts: trained again on all rows, whose n-grams the validation split would hide
    assert [(c.setting, c.value) for c in choose("transformer", texts, TrainConfig(), set(), user_data=True)[1]] \
        == [("refit", True)]
    assert choose("transformer", texts, TrainConfig(), set(), user_data=False)[1] == []  # (the built-in recipe)
    assert choose("transformer", texts, TrainConfig(), {"refit"}, user_data=True)[1] == []
