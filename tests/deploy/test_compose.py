"""The compose stack: images pinned, mounted files present, Prometheus pointed at the service."""

import yaml

from tests.deploy.conftest import DEPLOY

COMPOSE = DEPLOY / "compose"


def test_services_images_and_mounts():
    spec = yaml.safe_load((COMPOSE / "compose.yaml").read_text())
    services = spec["services"]
    assert set(services) == {"modelserve", "prometheus", "grafana"}
    build = services["modelserve"]["build"]
    assert (COMPOSE / build["context"] / build["dockerfile"]).is_file()
    for name, service in services.items():
        if "image" in service and name != "modelserve":
            assert ":" in service["image"] and not service["image"].endswith(":latest"), f"{name} image is not pinned"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert (COMPOSE / source).exists(), f"{name} mounts {source}, which does not exist"
    assert "3000:3000" in services["modelserve"]["ports"]


def test_gpu_override_reserves_a_gpu():
    spec = yaml.safe_load((COMPOSE / "compose.gpu.yaml").read_text())
    device = spec["services"]["modelserve"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert spec["services"]["modelserve"]["environment"]["MODELSERVE_DEVICE"] == "cuda"


def test_prometheus_scrapes_the_compose_service_and_loads_the_rules():
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = {t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    assert "modelserve:3000" in targets and config["rule_files"] == ["alerts.yml"]


def test_grafana_is_provisioned_with_the_datasource_the_dashboard_uses():
    datasource = yaml.safe_load((COMPOSE / "grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    dashboard = (COMPOSE / "grafana/dashboards/modelserve.json").read_text()
    assert f'"uid": "{uid}"' in dashboard
    provider = yaml.safe_load((COMPOSE / "grafana/provisioning/dashboards/modelserve.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
