"""The serving targets are judged from a run's results: met, or missed by how much."""

import sys

from tests.paths import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
from targets import judge, markdown  # noqa: E402


def point(rows_per_s: float, p99_ms: float = 10.0, errors: int = 0) -> dict:
    return {"rows_per_s": rows_per_s, "p99_ms": p99_ms, "errors": errors}


def results(ours: dict, unbatched: dict, fastapi: dict, bulk_ratio: float) -> dict:
    names = {"modelserve": "ms", "modelserve-unbatched": "off", "fastapi": "fa"}
    return {"system_keys": names, "bulk_rows": 64,
            "systems": {"ms": ours, "off": unbatched, "fa": fastapi},
            "bulk": {"ms": {"transformer": {"served_over_raw_batch64": bulk_ratio}}}}


def verdicts(rows: list[dict]) -> dict[str, bool]:
    return {row["target"].split(" (")[0].split(";")[0]: row["met"] for row in rows}


def test_targets_met_and_missed_are_told_apart():
    run = results(ours={"transformer": {"64": point(3000, p99_ms=30)}, "mlp": {"1": point(900)}},
                  unbatched={"transformer": {"64": point(2000)}, "mlp": {"1": point(1000)}},
                  fastapi={"transformer": {"64": point(2500, p99_ms=25)}}, bulk_ratio=0.5)
    rows = judge(run)
    assert verdicts(rows) == {
        "transformer c=64: rows/s against FastAPI": True,
        "transformer c=64: p99 no worse than FastAPI's": False,  # 30 ms against 25
        "transformer c=64: errors": True,
        "batching on against off, worst of 2 points in single windows": False,  # mlp c=1 at 0.90
        "bulk transformer: served rows/s of the raw engine at batch 64": False,
    }
    batching = next(row for row in rows if row["target"].startswith("batching"))
    assert "mlp c=1 (0.90)" in batching["target"] and batching["measured"] == 0.9
    table = "\n".join(markdown(rows))
    assert "| 1.20x | ≥ 1.20x | met |" in table  # 1.2x every peer at c=64
    assert "| 30.0 ms | ≤ 25.0 ms | **missed** by 5.0 ms |" in table
    assert "**missed** by 17 %" in table  # bulk 0.50 against 0.60


def test_every_peer_is_judged_at_each_concurrency_and_triton_needs_twice_at_64():
    run = results(ours={"transformer": {"1": point(900), "64": point(3000)}}, unbatched={},
                  fastapi={"transformer": {"1": point(1000)}}, bulk_ratio=1.0)
    run["system_keys"]["triton"] = "tr"
    run["systems"]["tr"] = {"transformer": {"64": point(1600)}}
    run["bulk"]["ms"]["transformer"]["rows_per_s"] = 5000
    run["bulk"]["tr"] = {"transformer": {"rows_per_s": 4000}}
    found = verdicts(judge(run))
    assert found["transformer c=1: rows/s against FastAPI"] is False  # 0.90 against 1.0
    assert found["transformer c=64: rows/s against Triton"] is False  # 1.88 against 2.0
    assert found["bulk transformer: rows/s against Triton"] is True  # 1.25 against 1.0


def test_targets_need_the_systems_they_compare():
    run = results(ours={"transformer": {"64": point(3000)}}, unbatched={}, fastapi={}, bulk_ratio=1.0)
    assert "FastAPI" not in " ".join(row["target"] for row in judge(run))


def test_bulk_targets_name_the_http_ceiling_where_the_run_measured_it():
    run = results(ours={}, unbatched={}, fastapi={}, bulk_ratio=0.06)
    run["system_keys"]["http-ceiling"] = "ceiling"
    run["bulk"]["ceiling"] = {"transformer": {"served_over_raw_batch64": 0.39}}
    (bulk,) = [row for row in judge(run) if row["target"].startswith("bulk")]
    assert bulk["target"].endswith("(the HTTP ceiling, a server doing nothing: 0.39x)") and not bulk["met"]
    del run["bulk"]["ceiling"]
    (bulk,) = [row for row in judge(run) if row["target"].startswith("bulk")]
    assert "ceiling" not in bulk["target"]
