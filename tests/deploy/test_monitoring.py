"""Alert rules pass promtool's checks and unit tests; dashboard and alerts name only metrics the service exports."""

import json
import re
import subprocess

import httpx
import yaml

from tests.deploy.conftest import DEPLOY, tool

PROMETHEUS = DEPLOY / "prometheus"
DASHBOARD = DEPLOY / "compose" / "grafana" / "dashboards" / "modelserve.json"
EXPORTER_METRICS = re.compile(r"^(DCGM_|up$)")  # from dcgm-exporter and Prometheus itself


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([tool("promtool"), *args], cwd=PROMETHEUS, capture_output=True, text=True)


def test_promtool_check_rules_and_config():
    checked = promtool("check", "rules", "alerts.yml")
    assert checked.returncode == 0 and "SUCCESS: 8 rules found" in checked.stdout, checked.stdout + checked.stderr
    config = promtool("check", "config", "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr


def test_promtool_unit_tests_fire_each_alert_and_stay_quiet_when_healthy():
    result = promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    tests = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())["tests"]
    fired = {t["alertname"] for case in tests for t in case["alert_rule_test"] if t["exp_alerts"]}
    alerts = {r["alert"] for g in yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"] for r in g["rules"]}
    assert fired == alerts  # every alert is shown firing


KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset"}


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: what is left once selectors, ranges, grouping clauses,
    function calls and keywords are taken out."""
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range durations
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)  # grouping label lists
    names = re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", expr)  # not followed by "(": not a function
    return {n for n in names if n not in KEYWORDS}


def test_dashboard_and_alerts_name_only_exported_metrics(onnx_server):
    httpx.post(f"{onnx_server.url}/v1/models/mlp:predict", json={"instances": [[0.1]]})
    httpx.post(f"{onnx_server.url}/v1/models/mlp:predict", json={"instances": [["bad"]]})
    exported = {line.split("{")[0].split(" ")[0] for line in httpx.get(f"{onnx_server.url}/metrics").text.splitlines()
                if line and not line.startswith("#")}
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    expressions += [r["expr"] for g in yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
                    for r in g["rules"]]
    named = set().union(*(metric_names(e) for e in expressions))
    assert {"modelserve_rows_per_engine_call_sum", "bentoml_service_request_total"} <= named  # the parser works
    unknown = {n for n in named if n not in exported and not EXPORTER_METRICS.match(n)}
    assert not unknown, f"queries name metrics the service does not export: {sorted(unknown)}"


def test_dashboard_has_the_operator_panels():
    titles = " | ".join(p["title"] for p in json.loads(DASHBOARD.read_text())["panels"])
    for needed in ("Request rate", "p50 / p95 / p99", "Rows per engine call", "Error ratio", "Refused",
                   "Inference time", "GPU utilisation", "GPU memory", "Answers by version", "New versions refused",
                   "texts cut to max_len"):
        assert needed in titles
