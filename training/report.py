"""What the job shows at the end: a metrics table and a loss-curve PNG."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: the job runs on servers and in Kubernetes Jobs
import matplotlib.pyplot as plt  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402


def metrics_table(title: str, metrics: dict[str, float], extra: dict[str, str]) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        table.add_row(f"val_{key}", f"{value:.6g}")
    for key, value in extra.items():
        table.add_row(key, value)
    return table


def choices_table(title: str, choices) -> Table:
    """What the job chose for this data and why (training/choices.py)."""
    table = Table(title=title)
    for column in ("setting", "value", "why"):
        table.add_column(column)
    for choice in choices:
        table.add_row(choice.setting, str(choice.value), choice.why)
    return table


def print_table(table: Table) -> None:
    Console(stderr=False).print(table)


def plot_loss_curve(history: list[dict[str, float]], metric: str, path: Path, title: str) -> None:
    """Train and validation loss per epoch, and the validation metric on a second axis."""
    epochs = [h["epoch"] + 1 for h in history]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(epochs, [h["train_loss"] for h in history], label="train loss")
    ax.plot(epochs, [h["val_loss"] for h in history], label="validation loss")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    other = ax.twinx()
    other.plot(epochs, [h[metric] for h in history], color="tab:green", linestyle="--", label=f"val {metric}")
    other.set_ylabel(f"validation {metric}")
    handles = ax.get_legend_handles_labels()[0] + other.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="center right", fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
