"""deploy/: checked with the real tools (promtool, systemd-analyze) and by parsing."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.deploy import DEPLOY, RULES, dashboard, dashboard_queries


def tool(name: str) -> str:
    """The path of a required tool; fails loudly (never skips) when it is missing."""
    path = shutil.which(name)
    assert path, f"{name} is not installed: apt-get install prometheus (see .ci/run)"
    return path


def run(*command: str) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert 0 == result.returncode, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_promtool_checks_the_rules() -> None:
    assert "SUCCESS: 27 rules found" in run(tool("promtool"), "check", "rules", str(RULES))


def test_promtool_rule_unit_tests_pass() -> None:
    output = run(
        tool("promtool"), "test", "rules", str(DEPLOY / "prometheus/tests/sessionpool.test.yml")
    )
    assert "SUCCESS" in output


def test_promtool_checks_the_compose_scrape_config() -> None:
    output = run(tool("promtool"), "check", "config", str(DEPLOY / "prometheus/prometheus.yml"))
    assert "SUCCESS: 1 rule files found" in output


def test_every_alert_has_for_severity_summary_and_description_naming_the_pool() -> None:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    alerts = [rule for group in groups for rule in group["rules"] if "alert" in rule]

    assert {
        "SessionPoolFewAvailableSessions",
        "SessionPoolLowAvailableRatio",
        "SessionPoolMostlyLocked",
        "SessionPoolEmpty",
        "SessionPoolStatisticsStale",
        "SessionPoolMongoDBUnreachable",
        "SessionPoolExporterDown",
        "SessionPoolExporterMissing",
        "SessionPoolBreakerOpen",
        "SessionPoolWorkersStarving",
    } == {alert["alert"] for alert in alerts}
    for alert in alerts:
        assert alert["for"], alert["alert"]
        assert alert["labels"]["severity"] in {"warning", "critical"}
        assert alert["annotations"]["summary"]
        assert alert["annotations"]["description"]
        if "collection" in alert["expr"] or alert["expr"].startswith("sessionpool:"):
            assert "{{ $labels.collection }}" in alert["annotations"]["summary"], alert["alert"]


def test_the_prometheusrule_is_rendered_from_the_rules_file() -> None:
    sys.path.insert(0, str(DEPLOY / "kubernetes"))
    try:
        import render_prometheusrule
    finally:
        sys.path.pop(0)
    committed = (DEPLOY / "kubernetes/prometheusrule.yaml").read_text()

    assert render_prometheusrule.render() == committed, (
        "run: python deploy/kubernetes/render_prometheusrule.py"
    )
    manifest = yaml.safe_load(committed)
    assert yaml.safe_load(RULES.read_text())["groups"] == manifest["spec"]["groups"]


def kubernetes_objects() -> dict[str, dict[str, Any]]:
    objects = {}
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            objects[document["kind"]] = document
    return objects


def test_kubernetes_manifests() -> None:
    objects = kubernetes_objects()
    assert {
        "Deployment",
        "Service",
        "ServiceMonitor",
        "PrometheusRule",
        "Secret",
        "Kustomization",
    } == set(objects)
    kustomized = set(objects["Kustomization"]["resources"])
    assert kustomized == {p.name for p in (DEPLOY / "kubernetes").glob("*.yaml")} - {
        "kustomization.yaml"
    }
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert ("/healthz", "/readyz") == (
        container["livenessProbe"]["httpGet"]["path"],
        container["readinessProbe"]["httpGet"]["path"],
    )
    assert container["resources"]["requests"]
    url_env = next(e for e in container["env"] if e["name"] == "SESSIONPOOL_MONGO_URL")
    secret_ref = url_env["valueFrom"]["secretKeyRef"]
    assert secret_ref["name"] == objects["Secret"]["metadata"]["name"]
    assert secret_ref["key"] in objects["Secret"]["stringData"]
    # The Service's name becomes the job label the alert rules expect.
    assert "sessionpool" == objects["Service"]["metadata"]["name"]
    port_names = {p["name"] for p in container["ports"]}
    assert objects["ServiceMonitor"]["spec"]["endpoints"][0]["port"] in port_names
    selector = objects["Service"]["spec"]["selector"]
    assert (
        selector.items() <= objects["Deployment"]["spec"]["template"]["metadata"]["labels"].items()
    )


def test_compose_file_services_and_mounts() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]

    assert {"mongo", "exporter", "demo-worker", "prometheus", "grafana"} == set(services)
    assert services["mongo"]["image"].startswith("mongo:8")
    assert "healthcheck" in services["mongo"]
    for name, service in services.items():
        assert service.get("image") or service.get("build"), name
        build = service.get("build")
        if build:
            assert (DEPLOY / build["context"] / build["dockerfile"]).is_file()
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name} mounts missing {source}"
    grafana_env = services["grafana"]["environment"]
    assert "true" == grafana_env["GF_AUTH_ANONYMOUS_ENABLED"]
    assert "Viewer" == grafana_env["GF_AUTH_ANONYMOUS_ORG_ROLE"]


def test_dockerfile_runs_as_non_root_with_a_healthcheck() -> None:
    # No Docker engine runs here, so the image is checked by reading its instructions.
    lines = [
        line.strip()
        for line in (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    stages = [i for i, line in enumerate(lines) if line.startswith("FROM ")]
    final = lines[stages[-1] :]
    users = [line.split()[1] for line in final if line.startswith("USER ")]
    assert users, "the final stage sets no USER"
    assert users[-1].split(":")[0] not in {"root", "0"}
    assert any(line.startswith("HEALTHCHECK") and "/healthz" in line for line in final)
    assert not any(re.search(r"\b(gcc|build-essential|apt-get)\b", line) for line in final)


def test_dashboard_structure() -> None:
    board = dashboard()
    variables = {v["name"] for v in board["templating"]["list"]}
    titles = " | ".join(panel["title"] for panel in board["panels"])

    assert {"datasource", "database", "collection"} == variables
    for needed in (
        "Available",
        "Sessions by state",
        "Success ratio",
        "Hand-out rate",
        "next unlock",
        "MongoDB reachable",
        "Refresh duration",
        "Circuit breakers open",
        "Workers",
        "came back empty",
        "Lease wait",
    ):
        assert needed in titles
    targets = " ".join(dashboard_queries())
    assert "sessionpool:target:min_available{" in targets  # each pool's threshold, drawn
    assert "sessionpool:target:min_available_ratio{" in targets
    assert len(dashboard_queries()) >= 12
    provisioning = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/dashboards/sessionpool.yml").read_text()
    )
    assert "/var/lib/grafana/dashboards" == provisioning["providers"][0]["options"]["path"]


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    exporter = shutil.which("sessionpool-exporter")
    assert exporter, "pip install -e . first"
    environment = tmp_path / "exporter.env"
    environment.write_text((DEPLOY / "systemd/exporter.env.example").read_text())
    unit = tmp_path / "sessionpool-exporter.service"
    unit.write_text(
        (DEPLOY / "systemd/sessionpool-exporter.service")
        .read_text()
        .replace("/opt/sessionpool/bin/sessionpool-exporter", exporter)
        .replace("/etc/sessionpool/exporter.env", str(environment))
    )

    result = subprocess.run(
        [tool("systemd-analyze"), "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    problems = [line for line in result.stderr.splitlines() if unit.name in line]
    assert (0, []) == (result.returncode, problems), result.stderr


@pytest.mark.parametrize("name", ["SESSIONPOOL_MONGO_URL", "SESSIONPOOL_DATABASE"])
def test_environment_example_names_real_settings(name: str) -> None:
    from exporter.config import load_config

    example = (DEPLOY / "systemd/exporter.env.example").read_text()
    settings = dict(
        line.split("=", 1) for line in example.splitlines() if line and not line.startswith("#")
    )
    assert name in settings
    config = load_config([], environ=settings)
    assert ("pools",) == config.databases
    assert (config.listen, config.port) == ("0.0.0.0", 9863)
