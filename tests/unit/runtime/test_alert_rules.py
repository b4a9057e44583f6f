"""The alert rules and the Grafana dashboard watch metrics that the code really exports (a
renamed metric would otherwise silence its alert or blank its panel without anyone noticing);
promtool checks the rules' syntax and behaviour."""

from __future__ import annotations

import json
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
    """Every series name the runtime's and the services' metrics produce, whether or not they
    have samples yet."""
    import services.approvals.metrics
    import services.health.metrics
    import services.identity.api
    import services.records.metrics

    names = set()
    modules = (
        govmesh.metrics,
        services.identity.api,
        services.records.metrics,
        services.approvals.metrics,
        services.health.metrics,
    )
    for metric in [value for module in modules for value in module.__dict__.values()]:
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


def test_every_metric_the_dashboard_shows_is_exported() -> None:
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "govmesh-overview.json").read_text())
    expressions = " ".join(t["expr"] for panel in dashboard["panels"] for t in panel["targets"])
    used = set(re.findall(r"\b(govmesh_[a-z_]+)\b", expressions))
    missing = sorted(used - exported_names())
    assert not missing, f"the dashboard shows metrics nobody exports: {missing}"
    assert len(dashboard["panels"]) >= 10
