"""Which epoch a classifier keeps (training/loop.py is_better): a more accurate one where its accuracy is higher by
more than the validation split's standard error, the one of the lower loss where the accuracies are within it."""

import math

import numpy as np
import pytest
import torch

import models
from training.data import Dataset
from training.distributed import Runtime
from training.loop import TrainConfig, TrainResult, is_better, selection_score, train


def classes(n: int, seed: int, flipped_share: float) -> Dataset:
    """Two halves of the plane with a share of their labels flipped, and a rare class in one corner."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))  # (n, 2)
    y = (x[:, 0] > 0).astype(int)
    y[(np.abs(x[:, 0] - 1.0) < 0.5) & (x[:, 1] > 0.5)] = 2
    flipped = (rng.random(n) < flipped_share) & (y < 2)
    y[flipped] = 1 - y[flipped]
    return Dataset("t", "multiclass", torch.tensor(x, dtype=torch.float32), torch.tensor(y), ["a", "b"], ["y"],
                   ["0", "1", "2"])


def trained(train_data: Dataset, val_data: Dataset, epochs: int, tmp_path) -> TrainResult:
    torch.manual_seed(0)
    model = models.build_model("mlp", models.make_config("mlp", {"n_features": 2, "n_outputs": 3,
                                                                 "hidden_sizes": [32, 32]}))
    return train("mlp", model, train_data, val_data, TrainConfig(epochs=epochs, patience=epochs, batch_size=32),
                 Runtime(0, 1, torch.device("cpu")), tmp_path)


def standard_error(accuracy: float, rows: int) -> float:
    return math.sqrt(accuracy * (1 - accuracy) / rows)


def test_an_epoch_more_accurate_beyond_noise_is_kept_though_its_loss_is_higher(tmp_path):
    # Clean training labels, 30 % flipped in validation: the model grows confident, so the flipped rows' loss rises
    # from the second epoch on, while it still learns the rare class and the accuracy climbs.
    val = classes(400, 100, 0.3)
    result = trained(classes(600, 0, 0.0), val, 12, tmp_path)
    lowest_loss = min(result.history, key=lambda h: h["val_loss"])
    kept = result.history[result.best_epochs - 1]
    assert kept["val_loss"] > lowest_loss["val_loss"]
    assert kept["accuracy"] > lowest_loss["accuracy"] + standard_error(lowest_loss["accuracy"], len(val))
    assert result.metrics["accuracy"] == kept["accuracy"]  # the model returned is that epoch's


def test_where_accuracies_are_within_noise_the_lower_loss_is_kept(tmp_path):
    # Labels 15 % flipped everywhere: the accuracy wanders by a few rows while the loss keeps falling.
    val = classes(300, 100, 0.15)
    result = trained(classes(600, 0, 0.15), val, 15, tmp_path)
    lowest_loss = min(result.history, key=lambda h: h["val_loss"])
    most_accurate = max(result.history, key=lambda h: h["accuracy"])
    assert most_accurate["accuracy"] > lowest_loss["accuracy"]  # (where picking by accuracy alone parts)
    assert most_accurate["accuracy"] <= lowest_loss["accuracy"] + standard_error(lowest_loss["accuracy"], len(val))
    assert result.best_epochs == lowest_loss["epoch"] + 1


@pytest.mark.parametrize("score, best, better", [
    ((0.96, -0.5), (0.94, -0.2), True),  # more accurate beyond 0.94's standard error on 1,000 rows (0.0075)
    ((0.945, -0.5), (0.94, -0.2), False),  # more accurate within it, and a higher loss
    ((0.935, -0.1), (0.94, -0.2), True),  # less accurate within it, and a lower loss
    ((0.93, -0.01), (0.94, -0.2), False),  # less accurate beyond it
    ((0.94, -0.2 + 1e-7), (0.94, -0.2), False),  # a loss lower by rounding only
    ((1.0, -0.1), (1.0, -0.2), True),  # every row right on both: the loss decides
    ((-0.1,), (-0.2,), True), ((-0.3,), (-0.2,), False), ((-0.2 + 1e-7,), (-0.2,), False),  # regression: the loss
    ((-0.2,), None, True),
])
def test_is_better(score, best, better):
    assert is_better(score, best, 1000) is better


def test_a_classifier_is_scored_by_accuracy_and_loss_and_regression_by_its_loss():
    assert selection_score({"accuracy": 0.9, "loss": 0.3}) == (0.9, -0.3)
    assert selection_score({"r2": 0.8, "mse": 2.0, "loss": 0.2}) == (-0.2,)
