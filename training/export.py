"""Export to TorchScript and ONNX, each checked against the eager model on held-out inputs.

The exported graph is `ServingGraph`: the model plus softmax for classifiers, so a server gets
predictions or probabilities straight from the engine. Regression outputs are compared after
dividing by the training targets' std (fp32 carries ~7 digits, so a 1e-4 bound in raw units would
depend on the data's units); probabilities are compared as they are.
"""

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch
from torch import nn

from training.errors import ParityError  # (raised here; also imported from here)

PARITY_TOLERANCE = 1e-4
PARITY_BATCH_SIZES = (1, 7, 64)


class ServingGraph(nn.Module):
    """What the exported files compute: model outputs, as probabilities for classifiers."""

    def __init__(self, model: nn.Module, classification: bool) -> None:
        super().__init__()
        self.model = model
        self.classification = classification

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.model(x)  # (B, T) predictions or (B, C) logits
        if self.classification:
            return y.softmax(dim=-1)  # (B, C)
        return y


@dataclass
class ParityCase:
    label: str
    """What the inputs are, e.g. 'batch=7 len=17 padded_to=64'."""
    inputs: torch.Tensor


@dataclass
class ParityResult:
    format: str
    case: str
    max_abs_diff: float

    def as_dict(self) -> dict:
        return {"format": self.format, "case": self.case, "max_abs_diff": self.max_abs_diff}


def parity_cases(held_out: torch.Tensor, input_kind: str, max_len: int | None = None,
                 columns: list | None = None) -> list[ParityCase]:
    """Held-out inputs at batch sizes 1, 7 and 64; token batches also cut short and over-padded; tabular rows also
    with every numeric value missing (NaN) and every category missing or unseen (code 0)."""
    cases = []
    for batch_size in PARITY_BATCH_SIZES:
        rows = torch.arange(batch_size) % len(held_out)
        batch = held_out[rows]  # (B, F) or (B, L)
        if input_kind == "features":
            cases.append(ParityCase(f"batch={batch_size}", batch))
            if columns:
                gaps = batch.clone()
                gaps[::2] = torch.tensor([0.0 if c.is_categorical else float("nan") for c in columns])  # (F,)
                cases.append(ParityCase(f"batch={batch_size} every other row missing or unseen", gaps))
            continue
        longest = int((batch != 0).sum(1).max())
        natural = batch[:, :longest]  # (B, L') padded to the batch's longest row
        cases.append(ParityCase(f"batch={batch_size} len={longest}", natural))
        short = natural[:, : max(1, longest // 3)].clone()  # (B, L'/3): a different, shorter length
        short[:, 0] = torch.where(short[:, 0] == 0, torch.ones_like(short[:, 0]), short[:, 0])
        cases.append(ParityCase(f"batch={batch_size} len={short.shape[1]}", short))
        if max_len and max_len > longest:
            padded = torch.zeros(batch_size, max_len, dtype=batch.dtype)  # (B, max_len)
            padded[:, :longest] = natural
            cases.append(ParityCase(f"batch={batch_size} len={longest} padded_to={max_len}", padded))
    return cases


def _check(fmt: str, graph: ServingGraph, run, cases: list[ParityCase], scale: torch.Tensor) -> list[ParityResult]:
    results = []
    with torch.inference_mode():
        for case in cases:
            expected = graph(case.inputs)
            got = torch.as_tensor(np.asarray(run(case.inputs)))
            if got.shape != expected.shape:
                raise ParityError(f"{fmt} output shape {tuple(got.shape)} != eager {tuple(expected.shape)} "
                                  f"({case.label})")
            diff = float(((got - expected).abs() / scale).max())
            results.append(ParityResult(fmt, case.label, diff))
    bad = [r for r in results if not r.max_abs_diff <= PARITY_TOLERANCE]
    if bad:
        lines = ", ".join(f"{r.case}: {r.max_abs_diff:.3g}" for r in bad)
        raise ParityError(f"{fmt} export disagrees with the eager model beyond {PARITY_TOLERANCE:g} "
                          f"(max abs diff per case: {lines})")
    return results


def export_torchscript(graph: ServingGraph, path: Path, cases: list[ParityCase],
                       scale: torch.Tensor) -> list[ParityResult]:
    """Script (not trace) so data-dependent lengths and masks stay dynamic; reload and compare."""
    torch.jit.save(torch.jit.script(graph), str(path))
    loaded = torch.jit.load(str(path), map_location="cpu")
    return _check("torchscript", graph, loaded, cases, scale)


def onnx_session(path: Path) -> onnxruntime.InferenceSession:
    """CPU provider: parity is a property of the file, and CPU gives the reference numbers."""
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def export_onnx(graph: ServingGraph, path: Path, cases: list[ParityCase], scale: torch.Tensor,
                input_name: str, output_name: str, max_len: int | None = None) -> list[ParityResult]:
    """Export with a dynamic batch axis (and sequence axis for tokens), run the checker, compare."""
    example = cases[-1].inputs
    batch = torch.export.Dim("batch", min=1, max=65536)
    dims = {0: batch} if max_len is None else {0: batch, 1: torch.export.Dim("seq", min=1, max=max_len)}
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # quiet the exporter's optional-op notices
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.export's own deprecation notices
        program = torch.onnx.export(graph, (example,), dynamo=True, input_names=[input_name],
                                    output_names=[output_name], dynamic_shapes={"x": dims}, verbose=False)
    program.save(str(path), external_data=False)
    onnx.checker.check_model(str(path), full_check=True)
    session = onnx_session(path)
    return _check("onnx", graph, lambda x: session.run(None, {input_name: x.numpy()})[0], cases, scale)
