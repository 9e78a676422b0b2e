"""Write kubernetes/prometheusrule.yaml from prometheus/rules/sessionpool.rules.yml.

The rules file is the one source of truth; run this after editing it:

    python deploy/kubernetes/render_prometheusrule.py

A test fails when the two differ.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parent.parent
RULES = DEPLOY / "prometheus" / "rules" / "sessionpool.rules.yml"
TARGET = DEPLOY / "kubernetes" / "prometheusrule.yaml"

HEADER = """\
# Generated from deploy/prometheus/rules/sessionpool.rules.yml by
# deploy/kubernetes/render_prometheusrule.py: edit the rules file, not this one.
"""


def render() -> str:
    """Return the PrometheusRule manifest holding the rules file's groups."""
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    manifest = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "sessionpool-exporter",
            "labels": {"app.kubernetes.io/name": "sessionpool-exporter"},
        },
        "spec": {"groups": groups},
    }
    return HEADER + yaml.safe_dump(manifest, sort_keys=False, width=100, allow_unicode=True)


if __name__ == "__main__":
    TARGET.write_text(render(), encoding="utf-8")
    sys.stdout.write(f"wrote {TARGET}\n")
