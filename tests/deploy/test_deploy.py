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

from tests.support.deploy import (
    ALERTMANAGER,
    DEPLOY,
    RULES,
    RUNBOOKS,
    dashboard,
    dashboard_queries,
)


def tool(name: str) -> str:
    """The path of a required tool; fails loudly (never skips) when it is missing."""
    path = shutil.which(name)
    assert path, (
        f"{name} is not installed: apt-get install prometheus prometheus-alertmanager (see .ci/run)"
    )
    return path


def run(*command: str) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert 0 == result.returncode, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_promtool_checks_the_rules() -> None:
    assert "SUCCESS: 28 rules found" in run(tool("promtool"), "check", "rules", str(RULES))


def test_promtool_rule_unit_tests_pass() -> None:
    output = run(
        tool("promtool"), "test", "rules", str(DEPLOY / "prometheus/tests/sessionpool.test.yml")
    )
    assert "SUCCESS" in output


def test_promtool_checks_the_compose_scrape_config() -> None:
    output = run(tool("promtool"), "check", "config", str(DEPLOY / "prometheus/prometheus.yml"))
    assert "SUCCESS: 1 rule files found" in output


def test_every_alert_has_for_severity_summary_and_description_naming_the_pool() -> None:
    alerts = rule_alerts()

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


def renderer() -> Any:
    sys.path.insert(0, str(DEPLOY / "kubernetes"))
    try:
        import render
    finally:
        sys.path.pop(0)
    return render


@pytest.mark.parametrize("name", ["prometheusrule.yaml", "alertmanager.yaml"])
def test_the_generated_manifests_are_up_to_date(name: str) -> None:
    committed = (DEPLOY / "kubernetes" / name).read_text()

    assert renderer().RENDERED[name]() == committed, "run: python deploy/kubernetes/render.py"


def test_the_manifests_hold_their_sources() -> None:
    rule = yaml.safe_load((DEPLOY / "kubernetes/prometheusrule.yaml").read_text())
    assert yaml.safe_load(RULES.read_text())["groups"] == rule["spec"]["groups"]
    secret, manager = yaml.safe_load_all((DEPLOY / "kubernetes/alertmanager.yaml").read_text())
    assert ALERTMANAGER.read_text() == secret["stringData"]["alertmanager.yaml"]
    # The operator reads the configuration of Alertmanager NAME from Secret alertmanager-NAME.
    assert f"alertmanager-{manager['metadata']['name']}" == secret["metadata"]["name"]


def test_amtool_checks_the_alertmanager_configuration(tmp_path: Path) -> None:
    output = run(tool("amtool"), "check-config", str(ALERTMANAGER))
    assert "SUCCESS" in output
    assert "3 inhibit rules" in output


def rule_alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def runbook_anchors() -> set[str]:
    """The anchors of docs/runbooks.md's headings, as GitHub and MkDocs make them."""
    headings = re.findall(r"^#+ (.+)$", RUNBOOKS.read_text(), flags=re.MULTILINE)
    return {re.sub(r"[^a-z0-9 _-]", "", h.lower()).replace(" ", "-") for h in headings}


def test_every_alert_links_its_runbook_section_and_states_its_threshold() -> None:
    anchors = runbook_anchors()
    for alert in rule_alerts():
        name, annotations = alert["alert"], alert["annotations"]
        url, _, anchor = annotations["runbook_url"].partition("#")
        assert url.endswith("/docs/runbooks.md"), name
        assert anchor == name.lower(), name
        assert anchor in anchors, f"docs/runbooks.md has no section for {name}"
        assert "threshold" in annotations["description"], name
        assert annotations["dashboard_url"].startswith("http://127.0.0.1:3000/d/sessionpool/")
    sections = re.findall(r"^## (SessionPool\w+)$", RUNBOOKS.read_text(), flags=re.MULTILINE)
    assert sorted(sections) == sorted(alert["alert"] for alert in rule_alerts())


def test_the_inhibit_rules_match_the_alerts_labels() -> None:
    """Each inhibit rule's source and target match real alerts, and none mutes itself.

    That the labels of *equal* match is shown by a real Alertmanager
    (tests/exporter/test_alerting_e2e.py).
    """
    config = yaml.safe_load(ALERTMANAGER.read_text())
    alerts = rule_alerts()

    def matching(matchers: list[str]) -> list[dict[str, Any]]:
        def matches(alert: dict[str, Any], matcher: str) -> bool:
            label, operator, value = re.fullmatch(r'(\w+)(=~|=)"(.*)"', matcher).groups()  # type: ignore[union-attr]
            have = alert["alert"] if label == "alertname" else alert["labels"].get(label, "")
            return bool(re.fullmatch(value, have)) if operator == "=~" else have == value

        return [a for a in alerts if all(matches(a, m) for m in matchers)]

    for rule in config["inhibit_rules"]:
        sources, targets = matching(rule["source_matchers"]), matching(rule["target_matchers"])
        assert sources, rule
        assert targets, rule
        assert not {a["alert"] for a in sources} & {a["alert"] for a in targets}, rule
    layers = {alert["labels"]["layer"] for alert in alerts}
    assert {"pool", "mongodb", "exporter", "workers"} == layers


def runbook_commands() -> list[str]:
    """Every ``sessionpool ...`` command of docs/runbooks.md, its placeholders filled in."""
    text = RUNBOOKS.read_text()
    inline = [" ".join(c.split()) for c in re.findall(r"`(sessionpool [^`]+)`", text)]
    blocks = re.findall(r"^(sessionpool .+?)(?:\s+#.*)?$", text, flags=re.MULTILINE)
    fill = {
        "DB.POOL": "pools.telegram",
        "SESSION_ID": "1",
        "ID ...": "1 2",
        "MODULE:FUNCTION": "json:loads",
        '"$URL"': "mongodb://127.0.0.1:9",
        " DB ": " pools ",
        "R": "0.2",
        " N": " 5",
    }
    commands = []
    for command in inline + blocks:
        command = command.split(" < ")[0].replace("time ", "") + " "
        for placeholder, value in fill.items():
            command = command.replace(placeholder, value)
        commands.append(command.strip())
    return commands


def test_the_runbooks_commands_are_real(capsys: pytest.CaptureFixture[str]) -> None:
    from sessionlib.cli.parser import build_parser

    commands = runbook_commands()
    assert len(commands) >= 15
    for command in commands:
        words = command.split()[1:]
        if words == ["target"]:  # "the pool's own target (`sessionpool target`)": the command
            continue
        try:
            build_parser().parse_args(words)
        except SystemExit:
            pytest.fail(f"docs/runbooks.md: {command!r} is refused: {capsys.readouterr().err}")


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
        "Alertmanager",
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

    assert {
        "mongo",
        "exporter",
        "demo-worker",
        "prometheus",
        "alertmanager",
        "alert-receiver",
        "grafana",
    } == set(services)
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
    # Prometheus sends alerts to the compose Alertmanager, which posts them to the receiver.
    scrape = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    (alertmanager,) = scrape["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert alertmanager.split(":")[0] == "alertmanager"
    assert any(p.endswith(alertmanager.split(":")[1]) for p in services["alertmanager"]["ports"])
    receiver = yaml.safe_load(ALERTMANAGER.read_text())["receivers"][0]["webhook_configs"][0]
    assert receiver["url"].startswith("http://alert-receiver:5001/")
    assert "5001" in services["alert-receiver"]["command"]
    # The demo workers' telemetry is scraped, so the dashboard's workers row has data.
    jobs = {j["job_name"]: j["static_configs"][0]["targets"] for j in scrape["scrape_configs"]}
    assert ["demo-worker:9100"] == jobs["workers"]
    assert "9100" in services["demo-worker"]["entrypoint"]
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


def roles() -> dict[str, str]:
    """Each role that deploy/mongodb/roles.js creates, with the text of its definition."""
    text = (DEPLOY / "mongodb/roles.js").read_text()
    blocks = text.split("admin.createRole({")[1:]
    return {re.search(r'role: "(\w+)"', block).group(1): block.split("});")[0] for block in blocks}  # type: ignore[union-attr]


def test_the_exporter_cannot_read_the_key_vault_and_the_workers_can() -> None:
    defined = roles()
    for exporter_role in ("sessionpoolStats", "sessionpoolAutoRelease"):
        assert "KEY_VAULT_DB" not in defined[exporter_role]
        assert "encryption" not in defined[exporter_role]
    reader = defined["sessionpoolKeyReader"]
    assert 'actions: ["find"]' in reader
    assert "db: KEY_VAULT_DB, collection: KEY_VAULT_COLLECTION" in reader
    text = (DEPLOY / "mongodb/roles.js").read_text()
    assert 'const KEY_VAULT_DB = "encryption";' in text
    assert 'const KEY_VAULT_COLLECTION = "__keyVault";' in text
    from sessionlib.encryption import DEFAULT_KEY_VAULT

    assert "encryption.__keyVault" == DEFAULT_KEY_VAULT
