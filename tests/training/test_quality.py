"""The default recipes learn what their data holds, judged through the exported ONNX files on fresh data."""

import numpy as np
import onnxruntime
import pytest

from training import data
from training.cli import main
from training.store import list_models

pytestmark = pytest.mark.slow


def onnx_predict(model_dir, inputs: np.ndarray) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: inputs})[0]


def test_housing_onnx_recovers_generating_coefficients(trained):
    rng = np.random.default_rng(7)
    raw = np.stack([rng.uniform(40, 250, 500), rng.uniform(0, 60, 500)], axis=1).astype(np.float32)  # raw units
    predicted = onnx_predict(trained["regression"]["path"], raw)[:, 0]
    design = np.column_stack([np.ones(len(raw)), raw])
    intercept, area, age = np.linalg.lstsq(design, predicted, rcond=None)[0]
    truth = data.HOUSING_COEFFICIENTS
    assert area == pytest.approx(truth["area_m2"], rel=0.02)
    assert age == pytest.approx(truth["age_years"], rel=0.02)
    assert intercept == pytest.approx(truth["intercept"], rel=0.02)


def test_zigzag_mlp_r2_at_least_099(trained):
    assert trained["mlp"]["manifest"]["metrics"]["r2"] >= 0.99
    fresh = data.zigzag(n=2000, seed=11)
    predicted = onnx_predict(trained["mlp"]["path"], fresh.inputs.numpy())
    y = fresh.targets.numpy()
    r2 = 1 - ((predicted - y) ** 2).sum() / ((y - y.mean()) ** 2).sum()
    assert r2 >= 0.99


def test_transformer_solves_order_task_and_bag_of_tokens_cannot(trained, tmp_path):
    fresh = data.order_task(n=2000, seed=21)
    probabilities = onnx_predict(trained["transformer"]["path"], fresh.inputs.numpy())
    accuracy = float((probabilities.argmax(1) == fresh.targets.numpy()).mean())
    assert accuracy >= 0.95
    assert trained["transformer"]["manifest"]["metrics"]["accuracy"] >= 0.95

    # The same data, the same width, but blind to order: it must stay near chance.
    assert main(["train", "bag_of_tokens", "--run-dir", str(tmp_path / "bag")]) == 0
    bag = next(m for m in list_models() if m.tag.name == "bag_of_tokens")
    bag_probabilities = onnx_predict(__import__("pathlib").Path(bag.path), fresh.inputs.numpy())
    bag_accuracy = float((bag_probabilities.argmax(1) == fresh.targets.numpy()).mean())
    assert bag_accuracy < 0.6, f"bag of tokens reached {bag_accuracy:.3f}; the task leaks order-free cues"
