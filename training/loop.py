"""The training loop: forward, loss, zero_grad, backward, step, with the care a real job needs.

Train/validation split, AdamW, warm-up + cosine LR, gradient clipping, early stopping on the
validation accuracy (the loss for regression and for ties), seeded data order, bf16 autocast on CUDA,
DistributedDataParallel under torchrun, and a checkpoint after every epoch that `--resume` continues from bit for bit.
"""

import copy
import math
import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from models import config_to_dict
from models._validation import raise_if_problems, type_problems
from training.data import Dataset
from training.distributed import Runtime
from training.errors import TrainingDiverged


@dataclass
class TrainConfig:
    epochs: int = 30
    """Upper bound on passes over the training split."""
    batch_size: int = 64
    """Rows per optimizer step on each rank."""
    lr: float = 3e-3
    """Peak learning rate of AdamW."""
    weight_decay: float = 0.01
    warmup_fraction: float = 0.05
    """Share of all steps spent warming the LR up linearly before the cosine decay."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this."""
    patience: int = 8
    """Stop after this many epochs without a better validation score (is_better)."""
    val_fraction: float = 0.2
    seed: int = 0
    device: str = "auto"
    """auto, cpu or cuda."""
    compile: bool = False
    """Train through torch.compile (the first epoch pays the compilation); exports use the eager module."""
    solver: str = "gradient"
    """'gradient' (this loop) or 'lstsq': linear regression solved exactly (training/solve.py)."""
    refit: bool = False
    """After the validation split has chosen the epoch count (or measured the solution), train again on all rows."""
    class_weight: str = "none"
    """'none', or 'balanced': each class weighs in the loss in inverse proportion to its rows."""

    def __post_init__(self) -> None:
        raise_if_problems("TrainConfig", type_problems(self))  # (the checks below compare numbers)
        problems = []
        for name in ("epochs", "batch_size", "patience"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            problems.append(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            problems.append(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0 <= self.warmup_fraction < 1:
            problems.append(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        if self.grad_clip <= 0:
            problems.append(f"grad_clip must be > 0, got {self.grad_clip}")
        if not 0 < self.val_fraction < 1:
            problems.append(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.device not in ("auto", "cpu", "cuda"):
            problems.append(f"device must be auto, cpu or cuda, got {self.device!r}")
        if self.solver not in ("gradient", "lstsq"):
            problems.append(f"solver must be gradient or lstsq, got {self.solver!r}")
        if self.class_weight not in ("none", "balanced"):
            problems.append(f"class_weight must be none or balanced, got {self.class_weight!r}")
        if problems:
            raise ValueError("invalid TrainConfig: " + "; ".join(problems))


@dataclass
class TrainResult:
    model: nn.Module
    """The model of the best validation score (is_better), in eval mode, on the CPU."""
    metrics: dict[str, float]
    """Validation metrics of that model."""
    best_epochs: int = 0
    """Epochs trained by the model returned (the one of the best validation score)."""
    refit_epochs: int = 0
    """Epochs of the refit on all training rows (config.refit), 0 without one."""
    history: list[dict[str, float]] = field(default_factory=list)
    """One entry per epoch: epoch, lr, train_loss, val_loss and the validation metrics."""
    epochs_run: int = 0
    samples_per_second: float = 0.0
    """Training-loop samples/s over all epochs (with torch.compile, its compilation included)."""
    steady_samples_per_second: float = 0.0
    """The same after the first epoch: the rate a long run settles at, compilation and warm-up excluded."""
    optimizer_state: dict = field(default_factory=dict)
    """AdamW state at the end of training, kept in the checkpoint so fine-tuning can continue."""


# ---------------------------------------------------------------- small pure helpers

def lr_at(step: int, total_steps: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to 10 % of the peak."""
    warmup = max(1, int(total_steps * config.warmup_fraction))
    if step < warmup:
        return config.lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    return config.lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled row order of one epoch; a function of (seed, epoch) alone, so resume replays it."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))


def rank_shard(order: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Equal-sized interleaved shard per rank (DDP needs the same number of steps on each)."""
    usable = (len(order) // world_size) * world_size
    return order[:usable][rank::world_size]


def compute_loss(outputs: torch.Tensor, targets: torch.Tensor, task: str, target_std: torch.Tensor,
                 class_weights: torch.Tensor | None = None) -> torch.Tensor:
    """MSE on standardised targets for regression (outputs are raw-scale), cross-entropy otherwise."""
    if task == "regression":
        return F.mse_loss(outputs.float() / target_std, targets / target_std)
    return F.cross_entropy(outputs.float(), targets, weight=class_weights)


def balanced_class_weights(targets: torch.Tensor, n_classes: int) -> torch.Tensor:
    """(C,) weights N / (C * rows of the class), as scikit-learn's class_weight='balanced'; absent classes get 1."""
    counts = torch.bincount(targets, minlength=n_classes).float()  # (C,)
    return torch.where(counts > 0, len(targets) / (n_classes * counts.clamp(min=1)), torch.ones_like(counts))


@torch.no_grad()
def evaluate(model: nn.Module, data: Dataset, device: torch.device, batch_size: int = 1024) -> dict[str, float]:
    """Validation loss and metric: R², MSE, MAE for regression; accuracy for classification."""
    model.eval()
    outputs = torch.cat([model(data.inputs[i:i + batch_size].to(device)).float().cpu()
                         for i in range(0, len(data), batch_size)])
    if data.task == "regression":
        # in float64: an error of 1e20 on one row squares past float32's range and would make the MSE inf
        outputs, y = outputs.double(), data.targets.double()  # (N, T)
        residual = ((outputs - y) ** 2).sum(0)
        total = ((y - y.mean(0)) ** 2).sum(0).clamp(min=1e-12)
        return {"r2": float((1 - residual / total).mean()), "mse": float(((outputs - y) ** 2).mean()),
                "mae": float((outputs - y).abs().mean()),
                "loss": float((((outputs - y) / y.std(0).clamp(min=1e-12)) ** 2).mean())}
    return {"accuracy": float((outputs.argmax(1) == data.targets).float().mean()),
            "loss": float(F.cross_entropy(outputs, data.targets))}


def selection_score(val: dict[str, float]) -> tuple[float, ...]:
    """What picks the epoch (higher is better): for a classifier its accuracy and loss, for regression the loss
    alone (R² = 1 - loss / variance, so the two agree). is_better says how a classifier's two parts are weighed."""
    return (val["accuracy"], -val["loss"]) if "accuracy" in val else (-val["loss"],)


def is_better(score: tuple[float, ...], best: tuple[float, ...] | None, val_rows: int) -> bool:
    """`score` beats `best` (None: nothing yet). Regression: by a loss lower by more than rounding (so that noise in
    the last digits does not reset patience).

    A classifier: by an accuracy higher than the best's by more than its standard error on `val_rows` rows; where
    the two accuracies are closer than that, by the loss. The accuracy first, as the loss also rises when a model
    grows overconfident on the classes it already gets right while it is still learning a rare one (spam-kinds, seed
    2: the lowest loss at epoch 3, hard ham never answered; the accuracy 3 points higher later). But only beyond
    its noise: on a few hundred rows of noisy labels (seattle-weather's 219 validation days) the highest accuracy is
    partly luck, the loss is measured on every row's probability, and picking by accuracy alone lost 2 to 7 of 366
    held-out days at every seed. (The one-standard-error rule of model selection, as Breiman's CART prunes.)
    """
    if best is None:
        return True
    lower_loss = score[-1] > best[-1] + 1e-6
    if len(score) == 1:
        return lower_loss
    accuracy, best_accuracy = score[0], best[0]
    noise = math.sqrt(best_accuracy * (1 - best_accuracy) / val_rows)
    return accuracy > best_accuracy + noise or (accuracy >= best_accuracy - noise and lower_loss)


def primary_metric(task: str) -> str:
    """The validation metric the model store ranks by (higher is better)."""
    return "r2" if task == "regression" else "accuracy"


def fit_scalers(model: nn.Module, train: Dataset) -> None:
    """Fit the standardisation baked into the graph on the training split only (no leakage)."""
    if hasattr(model, "encoder"):
        model.encoder.fit(train.inputs)
    if train.task == "regression" and hasattr(model, "output_scaler"):
        model.output_scaler.fit(train.targets)


# ---------------------------------------------------------------- checkpoints

def save_checkpoint(path: Path, state: dict) -> None:
    """Write atomically: a job killed mid-write keeps the previous checkpoint intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


# ---------------------------------------------------------------- the loop

def train(model_name: str, model: nn.Module, train_data: Dataset, val_data: Dataset, config: TrainConfig,
          runtime: Runtime, run_dir: Path, resume: bool = False, select_best: bool = True) -> TrainResult:
    """Train `model` and return the one of the best validation score (is_better; or the last, without
    `select_best`: the refit, whose validation rows are among its training rows). Writes run_dir/last.pt each epoch.

    The caller seeds torch before building `model`; dropout then draws from the same global RNG,
    whose state every checkpoint carries so that a resumed run draws what the original would have.
    """
    fit_scalers(model, train_data)
    device = runtime.device
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    metric = primary_metric(train_data.task)
    target_std = (train_data.targets.std(0).clamp(min=1e-12) if train_data.task == "regression"
                  else torch.ones(1)).to(device)
    class_weights = None
    if config.class_weight == "balanced" and train_data.task != "regression":
        class_weights = balanced_class_weights(train_data.targets, train_data.n_outputs).to(device)

    shard_size = len(rank_shard(torch.arange(len(train_data)), runtime.rank, runtime.world_size))
    steps_per_epoch = math.ceil(shard_size / config.batch_size)
    total_steps = steps_per_epoch * config.epochs

    start_epoch, step, history = 0, 0, []
    best_score, best_state, stale_epochs, best_epochs = None, copy.deepcopy(model.state_dict()), 0, 0
    checkpoint_path = run_dir / "last.pt"
    if resume:
        state = load_checkpoint(checkpoint_path)
        if state["model_name"] != model_name or state["model_config"] != config_to_dict(model.config):
            raise ValueError(f"{checkpoint_path} is a checkpoint of a different model or config; "
                             "resume with the same MODEL and --config, or start afresh without --resume")
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, step, history = state["epoch"] + 1, state["step"], state["history"]
        best_state, stale_epochs = state["best_state_dict"], state["stale_epochs"]
        best_epochs = state.get("best_epochs", 0)
        # (the score is read again from the history, not stored: the rule that makes it is the code's, not the file's)
        best_score = selection_score(history[best_epochs - 1]) if best_epochs else None
        torch.set_rng_state(state["rng_state"])  # dropout continues exactly where it stopped

    engine = DistributedDataParallel(model) if runtime.distributed else model
    if config.compile:
        engine = torch.compile(engine)  # shares the parameters: evaluation and export still use `model`
    use_bf16 = device.type == "cuda"
    # By step, not epoch: at 512 bytes a text model's epoch of 4,500 rows takes 20 s on two cores, and a large
    # table's minutes, with nothing moving on a bar by epoch
    progress = tqdm(total=total_steps, initial=start_epoch * steps_per_epoch, desc=f"train {model_name}",
                    unit="step", disable=not runtime.is_main, dynamic_ncols=True)
    samples_seen, seconds, epoch_rates = 0, 0.0, []
    stopped_early = start_epoch > 0 and stale_epochs >= config.patience

    for epoch in range(start_epoch, config.epochs):
        if stopped_early:
            break
        engine.train()
        shard = rank_shard(epoch_order(len(train_data), config.seed, epoch), runtime.rank, runtime.world_size)
        epoch_loss, started = 0.0, time.perf_counter()
        for first in range(0, len(shard), config.batch_size):
            rows = shard[first:first + config.batch_size]
            inputs, targets = train_data.inputs[rows].to(device), train_data.targets[rows].to(device)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, total_steps, config)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16):
                outputs = engine(inputs)  # 1. forward
            loss = compute_loss(outputs, targets, train_data.task, target_std, class_weights)  # 2. loss
            optimizer.zero_grad(set_to_none=True)  # 3. zero_grad
            loss.backward()  # 4. backward (DDP all-reduces gradients here)
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()  # 5. step
            loss_value = loss.item()
            if not math.isfinite(loss_value):  # the weights are no longer numbers; no later step brings them back
                raise TrainingDiverged(
                    f"epoch {epoch + 1}, step {step + 1}: the training loss is {loss_value}; lower --lr (now "
                    f"{config.lr:g}) or look for extreme values in the data. Nothing was saved")
            epoch_loss += loss_value * len(rows)
            step += 1
            progress.update(1)
        epoch_seconds, epoch_samples = time.perf_counter() - started, len(shard) * runtime.world_size
        seconds += epoch_seconds
        samples_seen += epoch_samples
        epoch_rates.append(epoch_samples / epoch_seconds)

        val = evaluate(model, val_data, device)
        history.append({"epoch": epoch, "lr": lr_at(step - 1, total_steps, config),
                        "train_loss": epoch_loss / max(1, len(shard)), "val_loss": val["loss"], **val})
        score = selection_score(val)
        if not select_best or is_better(score, best_score, len(val_data)):
            best_score, best_state, stale_epochs = score, copy.deepcopy(model.state_dict()), 0
            best_epochs = epoch + 1
        else:
            stale_epochs += 1
        stopped_early = stale_epochs >= config.patience
        if runtime.is_main:
            save_checkpoint(checkpoint_path, {
                "model_name": model_name, "model_config": config_to_dict(model.config),
                "train_config": asdict(config), "state_dict": model.state_dict(),
                "optimizer": optimizer.state_dict(), "epoch": epoch, "step": step, "history": history,
                "best_state_dict": best_state, "stale_epochs": stale_epochs, "best_epochs": best_epochs,
                "rng_state": torch.get_rng_state()})
        progress.set_postfix(epoch=f"{epoch + 1}/{config.epochs}", loss=f"{history[-1]['train_loss']:.4f}",
                             **{metric: f"{val[metric]:.4f}"})
    progress.close()

    model.load_state_dict(best_state)
    model.to("cpu").eval()
    metrics = evaluate(model, val_data, torch.device("cpu"))
    not_finite = {name: value for name, value in metrics.items() if not math.isfinite(value)}
    if not_finite:
        raise TrainingDiverged(
            f"the validation metrics {', '.join(f'{k}={v}' for k, v in not_finite.items())} are not numbers: the "
            "model's output overflows on validation rows whose values lie far outside the training rows' range. "
            "Nothing was saved")
    return TrainResult(model=model, metrics=metrics, best_epochs=best_epochs, history=history,
                       epochs_run=len(history), samples_per_second=samples_seen / seconds if seconds else 0.0,
                       steady_samples_per_second=statistics.median(epoch_rates[1:] or epoch_rates or [0.0]),
                       optimizer_state=optimizer.state_dict())

