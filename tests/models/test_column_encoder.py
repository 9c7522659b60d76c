"""The tabular preparation inside the graph: gaps filled with the training median, was-missing indicators, one-hot
categories with a shared slot for missing and unseen ones; and the configs that describe it."""

import math

import pytest
import torch

import models
from models.column_encoder import ColumnEncoder, TabularInputs

NAN = math.nan


def encoder() -> ColumnEncoder:
    # columns: 0 numeric with gaps (indicator), 1 categorical of 2 categories, 2 numeric
    inputs = TabularInputs(n_features=3, categorical=(1,), cardinalities=(2,), missing_indicators=(0,))
    layer = ColumnEncoder(inputs)
    layer.fit(torch.tensor([[1.0, 1, 10], [NAN, 2, 20], [2.0, 1, 30], [9.0, 0, 40]]))
    return layer


def test_fit_takes_the_median_of_present_values_and_scales_after_filling():
    layer = encoder()
    assert layer.fill.tolist() == [2.0, 25.0]  # median (not mean) of 1, 2, 9, the gap ignored; of 10..40
    filled = torch.tensor([1.0, 2.0, 2.0, 9.0])
    assert layer.mean[0].item() == pytest.approx(filled.mean().item())
    assert layer.std[0].item() == pytest.approx(filled.std(unbiased=False).item())


def test_forward_fills_gaps_flags_them_and_one_hots_codes_with_slot_zero_for_missing_or_unseen():
    layer = encoder()
    rows = torch.tensor([[NAN, 2, 25.0], [2.0, 0, 25.0], [2.0, NAN, NAN]])  # (3, 3)
    out = layer(rows)  # (3, 2 numeric + 1 indicator + 3 slots)
    assert out.shape == (3, 6) and layer.width == 6
    assert out[0, 0].item() == pytest.approx(out[1, 0].item())  # a gap reads as the median
    assert out[:, 2].tolist() == [1.0, 0.0, 0.0]  # was missing
    assert out[:, 3:].tolist() == [[0, 0, 1], [1, 0, 0], [1, 0, 0]]  # code 2; code 0; a NaN code is code 0
    assert out[2, 1].item() == pytest.approx(out[0, 1].item())  # (column 2's gap is filled too)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("values, fragment", [
    ({"n_features": 2, "categorical": [2], "cardinalities": [3]}, "categorical must be distinct column positions"),
    ({"n_features": 2, "categorical": [0], "cardinalities": []}, "cardinalities must hold one size >= 1 per"),
    ({"n_features": 2, "categorical": [0], "cardinalities": [2], "missing_indicators": [0]},
     "cannot be both categorical and have a missing indicator"),
    ({"n_features": 2, "missing_indicators": [1, 1]}, "missing_indicators must be distinct"),
])
@pytest.mark.parametrize("model", ["regression", "mlp"])
def test_configs_name_every_bad_column_setting(model, values, fragment):
    with pytest.raises(ValueError, match=fragment):
        models.make_config(model, values)


@pytest.mark.parametrize("model", ["regression", "mlp"])
def test_models_take_raw_rows_with_gaps_and_codes_through_torchscript(model):
    config = models.make_config(model, {"n_features": 3, "categorical": [1], "cardinalities": [2],
                                        "missing_indicators": [0]})
    module = models.build_model(model, config).eval()
    module.encoder.fit(torch.tensor([[1.0, 1, 10], [NAN, 2, 20], [3.0, 1, 30]]))
    rows = torch.tensor([[NAN, 2, 25.0], [3.0, 0, NAN]])
    scripted = torch.jit.script(module)
    torch.testing.assert_close(scripted(rows), module(rows))
    assert torch.isfinite(module(rows)).all()
