"""Shadow traffic: a copy of a request also goes to a candidate version, in the background, after the client's
answer is computed; the client gets the primary's answer, and the disagreement between the two is measured.

The copy is parsed by the candidate's own schema (a retrained version may read its inputs differently) and waits in
the candidate's own batcher, so a slow candidate queues and sheds its own work only; whatever it raises is counted,
never sent to a client. At most MAX_RUNNING copies per worker are in flight; beyond that copies are skipped and
counted, so a stuck candidate cannot pile up memory."""

import asyncio
import logging
from collections.abc import Callable

import numpy as np

from service import metrics

log = logging.getLogger("modelserve")
MAX_RUNNING = 256
_running: set[asyncio.Task] = set()  # (held: the loop keeps only weak references to tasks)


def copy_to(candidate, primary, parse: Callable[[object], np.ndarray], answer: np.ndarray) -> None:
    """Send the request `parse` reads to `candidate` too, and compare its outputs with `answer`, the primary's."""
    if len(_running) >= MAX_RUNNING:
        metrics.SHADOW_REQUESTS.labels(model=primary.name, candidate=candidate.version, outcome="skipped").inc()
        return
    task = asyncio.get_running_loop().create_task(_compare(candidate, primary, parse, answer))
    _running.add(task)
    task.add_done_callback(_running.discard)


async def _compare(candidate, primary, parse, answer: np.ndarray) -> None:
    outcome = "failed"
    try:
        theirs = await candidate.batcher.infer(parse(candidate))
        for measure, values in disagreement(primary, candidate, answer, theirs).items():
            observe = metrics.SHADOW_DISAGREEMENT.labels(model=primary.name, version=primary.version,
                                                         candidate=candidate.version, measure=measure).observe
            for value in values.tolist():
                observe(value)
        outcome = "compared"
    except Exception as error:  # (anything at all: a shadow's failure is counted, never a client's)
        log.debug("shadow %s failed: %s", candidate.artifacts.tag, error)
    metrics.SHADOW_REQUESTS.labels(model=primary.name, candidate=candidate.version, outcome=outcome).inc()


def disagreement(primary, candidate, ours: np.ndarray, theirs: np.ndarray) -> dict[str, np.ndarray]:
    """Per instance, by measure. ours, theirs: [N, outputs]. ValueError where the two cannot be compared."""
    if primary.task == "regression":
        if ours.shape != theirs.shape:
            raise ValueError(f"outputs of shape {theirs.shape}, not {ours.shape}")
        return {"abs_diff": np.abs(ours - theirs).max(axis=1)}
    ours_classes, their_classes = primary.manifest["class_names"], candidate.manifest["class_names"]
    labels_ours = np.asarray(ours_classes)[ours.argmax(axis=1)]  # [N]
    labels_theirs = np.asarray(their_classes)[theirs.argmax(axis=1)]  # [N]
    measures = {"label_mismatch": (labels_ours != labels_theirs).astype(np.float64)}
    if ours_classes == their_classes:
        measures["probability_diff"] = np.abs(ours - theirs).max(axis=1)
    return measures
