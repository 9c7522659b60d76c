"""Built-in datasets hold what they promise, and a split is seeded and disjoint."""

import torch

from models import ByteTokenizer
from training import data


def test_housing_follows_its_coefficients():
    ds = data.housing(n=4000)
    x = torch.cat([torch.ones(len(ds), 1), ds.inputs.double()], dim=1)  # (N, 3)
    coef = torch.linalg.lstsq(x, ds.targets.double()).solution.squeeze(1)
    expected = torch.tensor(list(data.HOUSING_COEFFICIENTS.values()), dtype=torch.float64)
    torch.testing.assert_close(coef, expected, rtol=0.05, atol=0.5)
    assert ds.feature_names == ["area_m2", "age_years"]


def test_order_task_labels_follow_positions_and_classes_share_token_counts():
    ds = data.order_task(n=500)
    a_id, b_id = ByteTokenizer().encode("ab")
    for ids, label in zip(ds.inputs, ds.targets):
        pos_a = int((ids == a_id).nonzero()[0])
        pos_b = int((ids == b_id).nonzero()[0])
        assert label == int(pos_a < pos_b)
        assert int((ids == a_id).sum()) == int((ids == b_id).sum()) == 1
    assert 0.4 < float(ds.targets.float().mean()) < 0.6


def test_split_is_seeded_and_disjoint():
    ds = data.zigzag(n=100)
    train_a, val_a = ds.split(0.2, seed=3)
    train_b, val_b = ds.split(0.2, seed=3)
    assert torch.equal(val_a.inputs, val_b.inputs) and len(val_a) == 20 and len(train_a) == 80
    assert not set(val_a.inputs.flatten().tolist()) & set(train_a.inputs.flatten().tolist())
