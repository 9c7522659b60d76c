"""--compile trains through torch.compile and ends at the model eager training reaches."""

import json

import torch

from tests.conftest import run_modelserve

CONFIG = "[model]\nhidden_sizes = [16, 16]\n[train]\nepochs = 3\npatience = 100\n"


def trained(home, *flags: str) -> tuple[dict, dict]:
    done = run_modelserve("train", "mlp", "--config", "mlp.toml", "--run-dir", str(home / "run"), *flags,
                          home=home, cwd=home.parent)
    assert done.returncode == 0, done.stderr
    version = next((home / "models" / "mlp").glob("*/"))
    return json.loads((version / "manifest.json").read_text()), \
        torch.load(version / "checkpoint.pt", weights_only=True)["state_dict"]


def test_compiled_training_matches_eager_and_records_its_rates(tmp_path):
    (tmp_path / "mlp.toml").write_text(CONFIG)
    eager_manifest, eager_state = trained(tmp_path / "eager")
    compiled_manifest, compiled_state = trained(tmp_path / "compiled", "--compile")

    assert compiled_manifest["train_config"]["compile"] is True
    assert eager_manifest["train_config"]["compile"] is False
    # Same seed, same data order: the compiled graph computes the same steps up to float reassociation.
    for name, tensor in eager_state.items():
        torch.testing.assert_close(compiled_state[name], tensor, atol=1e-4, rtol=1e-4, msg=name)
    assert compiled_manifest["parity"]  # the exports of a compiled run are checked like any other
    for manifest in (eager_manifest, compiled_manifest):
        assert manifest["train_samples_per_second_after_first_epoch"] > 0
