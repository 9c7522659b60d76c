"""Kubernetes manifests: strict schema validation, kustomizations that name real files, rendered overlays."""

import copy

import kubernetes_validate
import pytest
import yaml

from tests.deploy.conftest import DEPLOY, load_all

K8S = DEPLOY / "k8s"
K8S_VERSION = "1.33.0"
CUSTOM_KINDS = {"ServiceMonitor", "PrometheusRule", "Kustomization"}
MANIFESTS = sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")
PATCH_DIRS = ("gpu", "cpu")  # overlays' patches are partial: they are validated as rendered (below)
BUILT_IN = [p for p in MANIFESTS if p.parent.name not in PATCH_DIRS
            and any(doc["kind"] not in CUSTOM_KINDS for doc in load_all(p))]
KUSTOMIZATIONS = sorted(K8S.rglob("kustomization.yaml"))


def validate(doc: dict) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def merge(base, patch):
    """Strategic-merge as kustomize does it for these patches: maps merge, named lists merge by name."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            out[key] = merge(base[key], value) if key in base else copy.deepcopy(value)
        return out
    if isinstance(base, list) and isinstance(patch, list) and all(isinstance(x, dict) and "name" in x
                                                                   for x in base + patch):
        out = [copy.deepcopy(x) for x in base]
        for item in patch:
            match = next((i for i, x in enumerate(out) if x["name"] == item["name"]), None)
            if match is None:
                out.append(copy.deepcopy(item))
            else:
                out[match] = merge(out[match], item)
        return out
    return copy.deepcopy(patch)


def render(directory) -> list[dict]:
    """Resources of a kustomization with its patches applied (enough of kustomize for these files)."""
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
    docs = []
    for resource in spec.get("resources", []):
        target = directory / resource
        docs += render(target) if target.is_dir() else load_all(target)
    for patch in spec.get("patches", []):
        (change,) = load_all(directory / patch["path"])
        for i, doc in enumerate(docs):
            if doc["kind"] == change["kind"] and doc["metadata"]["name"] == change["metadata"]["name"]:
                docs[i] = merge(doc, change)
    return docs


@pytest.mark.parametrize("path", BUILT_IN, ids=lambda p: str(p.relative_to(K8S)))
def test_manifest_validates_strictly(path):
    docs = [doc for doc in load_all(path) if doc["kind"] not in CUSTOM_KINDS]
    assert docs
    for doc in docs:
        validate(doc)


def test_validation_would_catch_a_mistake():
    (deployment,) = load_all(K8S / "base" / "deployment.yaml")
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProb"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment)


@pytest.mark.parametrize("path", KUSTOMIZATIONS, ids=lambda p: str(p.parent.relative_to(K8S)))
def test_kustomization_names_only_existing_files(path):
    spec = yaml.safe_load(path.read_text())
    named = spec.get("resources", []) + [p["path"] for p in spec.get("patches", [])]
    assert named
    for entry in named:
        assert (path.parent / entry).exists(), f"{path} names {entry}, which does not exist"


@pytest.mark.parametrize("overlay", ["gpu", "cpu"])
def test_rendered_overlay_validates_and_keeps_the_contract(overlay):
    docs = render(K8S / "overlays" / overlay)
    for doc in docs:
        if doc["kind"] not in CUSTOM_KINDS:
            validate(doc)
    kinds = {d["kind"] for d in docs}
    assert kinds >= {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ServiceMonitor",
                     "PrometheusRule", "PersistentVolumeClaim"}
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["failureThreshold"] * container["startupProbe"]["periodSeconds"] >= 120
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["terminationGracePeriodSeconds"] > container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert any(v.get("persistentVolumeClaim", {}).get("claimName") == "modelserve-model-store" for v in pod["volumes"])
    if overlay == "gpu":
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert pod["nodeSelector"] and pod["tolerations"][0]["key"] == "nvidia.com/gpu"
        assert env["MODELSERVE_DEVICE"] == "cuda"
    else:
        assert "nvidia.com/gpu" not in container["resources"]["limits"] and env["MODELSERVE_DEVICE"] == "cpu"


def test_service_monitor_and_service_agree():
    docs = {d["kind"]: d for d in render(K8S / "base")}
    monitor, service = docs["ServiceMonitor"], docs["Service"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    port_names = {p["name"] for p in service["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in port_names and endpoint["path"] == "/metrics"
    container_ports = {p["name"] for p in docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= container_ports


def test_prometheus_rule_holds_the_plain_rules_file():
    (rule,) = load_all(K8S / "base" / "prometheusrule.yaml")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and rule["kind"] == "PrometheusRule"
    plain = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    assert rule["spec"]["groups"] == plain["groups"]
    for group in rule["spec"]["groups"]:
        for item in group["rules"]:
            assert {"alert", "expr", "for", "labels", "annotations"} <= set(item)


def test_training_jobs_write_to_the_store_and_multi_gpu_uses_torchrun():
    jobs = {d["metadata"]["name"]: d for d in render(K8S / "training")}
    single, multi = jobs["modelserve-train"], jobs["modelserve-train-multigpu"]
    promote = yaml.safe_load((K8S / "training" / "job-promote.yaml").read_text())  # (applied by hand, one version)
    assert "modelserve-promote" not in jobs and promote["spec"]["template"]["spec"]["containers"][0]["command"] == \
        ["modelserve", "promote"]
    for job in (single, multi, promote):
        pod = job["spec"]["template"]["spec"]
        mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "model-store")
        assert mount["mountPath"] == "/var/lib/modelserve" and "readOnly" not in mount  # BENTOML_HOME, writable
    assert single["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    container = multi["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["torchrun"] and "--nproc_per_node=4" in container["args"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "4"
