"""The alert rules watch metrics that the code really exports (a renamed metric would otherwise
silence its alert without anyone noticing); promtool checks their syntax and behaviour."""

from __future__ import annotations

import re

import yaml

import govmesh.metrics
from govmesh.config import ROOT

PROMQL_BUILTINS = {"up"}


SUFFIXES = {
    "counter": ["_total"],
    "histogram": ["_bucket", "_sum", "_count"],
    "gauge": [""],
    "summary": ["_sum", "_count"],
}


def exported_names() -> set[str]:
    """Every series name the runtime's metrics produce, whether or not they have samples yet."""
    names = set()
    for metric in govmesh.metrics.__dict__.values():
        if hasattr(metric, "describe") and not isinstance(metric, type):
            for family in metric.describe():
                names |= {family.name + suffix for suffix in SUFFIXES.get(family.type, [""])}
    return names


def test_every_metric_an_alert_uses_is_exported() -> None:
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    recorded = {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}
    expressions = " ".join(r["expr"] for g in rules["groups"] for r in g["rules"])
    used = set(re.findall(r"\b(govmesh_[a-z_]+|up)\b", expressions))
    exported = exported_names()
    missing = {name for name in used if name not in exported and name not in PROMQL_BUILTINS and name not in recorded}
    assert not missing, f"alerts use metrics nobody exports: {sorted(missing)}"
    assert "govmesh_outbox_backlog" in used and "govmesh_grpc_requests_total" in used
