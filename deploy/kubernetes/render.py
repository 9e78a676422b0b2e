"""Write the generated manifests of deploy/kubernetes/ from their sources of truth.

* ``prometheusrule.yaml`` from ``prometheus/rules/sessionpool.rules.yml``;
* ``alertmanager.yaml`` from ``alertmanager/alertmanager.yml``.

Run this after editing either source:

    python deploy/kubernetes/render.py

A test fails when a manifest differs from what this writes.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parent.parent
RULES = DEPLOY / "prometheus" / "rules" / "sessionpool.rules.yml"
ALERTMANAGER = DEPLOY / "alertmanager" / "alertmanager.yml"
LABELS = {"app.kubernetes.io/name": "sessionpool-exporter"}


def header(source: Path) -> str:
    """The notice at the top of a generated manifest."""
    return (
        f"# Generated from deploy/{source.relative_to(DEPLOY)} by\n"
        "# deploy/kubernetes/render.py: edit that file, not this one.\n"
    )


class Dumper(yaml.SafeDumper):
    """Writes text of several lines as a literal block, so the manifest stays readable."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


Dumper.add_representer(str, _text)


def dump(*documents: dict[str, Any]) -> str:
    return yaml.dump_all(documents, Dumper=Dumper, sort_keys=False, width=100, allow_unicode=True)


def prometheusrule() -> str:
    """Return the PrometheusRule manifest holding the rules file's groups."""
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    manifest = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "sessionpool-exporter", "labels": LABELS},
        "spec": {"groups": groups},
    }
    return header(RULES) + dump(manifest)


def alertmanager() -> str:
    """Return an Alertmanager (Prometheus Operator) and the Secret holding its configuration.

    The operator reads the configuration from the Secret named
    ``alertmanager-<name>``, key ``alertmanager.yaml``.
    """
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "alertmanager-sessionpool", "labels": LABELS},
        "type": "Opaque",
        "stringData": {"alertmanager.yaml": ALERTMANAGER.read_text(encoding="utf-8")},
    }
    manager = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "Alertmanager",
        "metadata": {"name": "sessionpool", "labels": LABELS},
        "spec": {
            "replicas": 1,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 65534, "fsGroup": 65534},
        },
    }
    return header(ALERTMANAGER) + dump(secret, manager)


RENDERED = {"prometheusrule.yaml": prometheusrule, "alertmanager.yaml": alertmanager}
"""Each generated manifest, by file name, and the function that writes it."""


if __name__ == "__main__":
    for name, render in RENDERED.items():
        target = DEPLOY / "kubernetes" / name
        target.write_text(render(), encoding="utf-8")
        sys.stdout.write(f"wrote {target}\n")
