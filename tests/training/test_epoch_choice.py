"""Which epoch a classifier keeps (training/loop.py selection_score): the one of the highest validation accuracy,
even where its validation loss had already risen, the loss telling apart epochs of equal accuracy."""

import numpy as np
import torch

import models
from training.data import Dataset
from training.distributed import Runtime
from training.loop import TrainConfig, is_better, selection_score, train


def noisy_classes(n: int, seed: int) -> Dataset:
    """Two halves of the plane, 15 % of their labels flipped, and a small rare class in one corner: as the model
    learns the rare class it grows confident on the halves, and the flipped rows' loss rises."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))  # (n, 2)
    y = (x[:, 0] > 0).astype(int)
    y[(np.abs(x[:, 0] - 1.5) < 0.3) & (x[:, 1] > 1.0)] = 2
    flipped = (rng.random(n) < 0.15) & (y < 2)
    y[flipped] = 1 - y[flipped]
    return Dataset("t", "multiclass", torch.tensor(x, dtype=torch.float32), torch.tensor(y), ["a", "b"], ["y"],
                   ["0", "1", "2"])


def test_a_classifier_keeps_its_most_accurate_epoch_though_its_loss_was_lowest_at_another(tmp_path):
    torch.manual_seed(0)
    model = models.build_model("mlp", models.make_config("mlp", {"n_features": 2, "n_outputs": 3,
                                                                 "hidden_sizes": [32, 32]}))
    result = train("mlp", model, noisy_classes(600, 0), noisy_classes(300, 100),
                   TrainConfig(epochs=15, patience=15, batch_size=32), Runtime(0, 1, torch.device("cpu")), tmp_path)
    history = result.history
    lowest_loss = min(history, key=lambda h: h["val_loss"])
    most_accurate = max(history, key=lambda h: (h["accuracy"], -h["val_loss"]))
    assert most_accurate["epoch"] != lowest_loss["epoch"]  # (the case where the two rules part)
    assert most_accurate["accuracy"] > lowest_loss["accuracy"]
    assert result.best_epochs == most_accurate["epoch"] + 1
    assert result.metrics["accuracy"] == most_accurate["accuracy"]  # the model returned is that epoch's


def test_the_loss_breaks_ties_beyond_rounding_and_regression_is_chosen_by_its_loss():
    assert selection_score({"accuracy": 0.9, "loss": 0.3}) == (0.9, -0.3)
    assert selection_score({"r2": 0.8, "mse": 2.0, "loss": 0.2}) == (-0.2,)
    assert is_better((0.96, -0.5), (0.94, -0.2))  # more accurate, though its loss is higher
    assert is_better((0.94, -0.1), (0.94, -0.2)) and not is_better((0.94, -0.2 + 1e-7), (0.94, -0.2))
    assert not is_better((0.93, -0.01), (0.94, -0.2))
    assert is_better((-0.2,), None) and is_better((-0.1,), (-0.2,)) and not is_better((-0.3,), (-0.2,))
