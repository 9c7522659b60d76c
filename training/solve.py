"""Linear regression solved exactly: the least-squares optimum in one step, where gradient descent only nears it.

On a small real set the difference shows: the regression trained by gradient steps reached R² 0.338 where ordinary
least squares on the same rows reaches 0.359. The columns are prepared by the model's own encoder (imputation,
scaling, one-hot), so the solution is for exactly the inputs the exported graph computes.
"""

import time

import torch

from training.data import Dataset
from training.loop import TrainResult, evaluate, fit_scalers


def solve_least_squares(model, train_data: Dataset, val_data: Dataset) -> TrainResult:
    """Fit `model` (models/regression.py) on train_data by torch.linalg.lstsq; measure it on val_data."""
    started = time.perf_counter()
    fit_scalers(model, train_data)
    model.to("cpu").eval()
    with torch.no_grad():
        z = model.encoder(train_data.inputs).double()  # (N, D) prepared columns
        y = model.output_scaler(train_data.targets).double()  # (N, T) standardised targets
        design = torch.cat([z, torch.ones(len(z), 1, dtype=torch.float64)], dim=1)  # (N, D + 1): intercept last
        # gelsd: SVD based, so a rank-deficient design (a one-hot block beside the intercept, a constant column) gets
        # the minimum-norm solution instead of a failure.
        solution = torch.linalg.lstsq(design, y, driver="gelsd").solution  # (D + 1, T)
        model.linear.weight.copy_(solution[:-1].T.float())  # (T, D)
        model.linear.bias.copy_(solution[-1].float())  # (T,)
    rate = len(train_data) / (time.perf_counter() - started)  # rows per second of the whole solve, preparation included
    metrics = evaluate(model, val_data, torch.device("cpu"))
    train_loss = evaluate(model, train_data, torch.device("cpu"))["loss"]
    history = [{"epoch": 0, "lr": 0.0, "train_loss": train_loss, "val_loss": metrics["loss"], **metrics}]
    return TrainResult(model=model.eval(), metrics=metrics, best_epochs=1, history=history, epochs_run=1,
                       samples_per_second=rate, steady_samples_per_second=rate)
