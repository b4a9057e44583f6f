"""The alert rules and the Grafana dashboards watch metrics that the code really exports (a
renamed metric would otherwise silence its alert or blank its panel without anyone noticing);
the crowd and health alerts explain themselves and each has a promtool test that fires and one
that stays quiet; the dashboards follow one set of conventions. promtool itself checks the rules'
syntax and behaviour (`make lint`)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

import govmesh.metrics
from govmesh.config import ROOT

PROMQL_BUILTINS = {"up"}
PROMETHEUS = ROOT / "deploy" / "prometheus"
DASHBOARDS = sorted((ROOT / "deploy" / "grafana").glob("*.json"))
#: Groups whose alerts carry a description and a runbook hint, and are tested firing and quiet.
EXPLAINED_GROUPS = {"govmesh-crowd", "govmesh-health"}
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


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
    import services.crowd.metrics
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
        services.crowd.metrics,
    )
    for metric in [value for module in modules for value in module.__dict__.values()]:
        if hasattr(metric, "describe") and not isinstance(metric, type):
            for family in metric.describe():
                names |= {family.name + suffix for suffix in SUFFIXES.get(family.type, [""])}
    return names


def rule_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    return groups


def explained_alerts() -> list[dict[str, Any]]:
    return [r for g in rule_groups() if g["name"] in EXPLAINED_GROUPS for r in g["rules"] if "alert" in r]


def load_dashboard(path: Path) -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(path.read_text())
    return dashboard


def test_every_metric_an_alert_uses_is_exported() -> None:
    groups = rule_groups()
    recorded = {r["record"] for g in groups for r in g["rules"] if "record" in r}
    expressions = " ".join(r["expr"] for g in groups for r in g["rules"])
    # Label lists (`by (govmesh_service)`) name labels, not metrics.
    expressions = re.sub(r"\b(by|without|on|ignoring) \([^)]*\)", " ", expressions)
    used = set(re.findall(r"\b(govmesh_[a-z_]+|up)\b", expressions))
    exported = exported_names()
    missing = {name for name in used if name not in exported and name not in PROMQL_BUILTINS and name not in recorded}
    assert not missing, f"alerts use metrics nobody exports: {sorted(missing)}"
    assert "govmesh_outbox_backlog" in used and "govmesh_grpc_requests_total" in used
    assert {"govmesh_crowd_zone_level", "govmesh_health_default_rate_ppb"} <= used


def test_every_metric_the_dashboards_show_is_exported() -> None:
    assert [p.name for p in DASHBOARDS] == ["govmesh-crowd.json", "govmesh-health.json", "govmesh-overview.json"]
    exported = exported_names()
    for path in DASHBOARDS:
        dashboard = load_dashboard(path)
        expressions = " ".join(t["expr"] for panel in dashboard["panels"] for t in panel["targets"])
        used = set(re.findall(r"\b(govmesh_[a-z_]+)\b", expressions))
        missing = sorted(used - exported)
        assert not missing, f"{path.name} shows metrics nobody exports: {missing}"
        assert len(dashboard["panels"]) >= 10, path.name


def test_dashboards_follow_the_overview_conventions() -> None:
    uids = [load_dashboard(path)["uid"] for path in DASHBOARDS]
    assert len(set(uids)) == len(uids), f"dashboard uids must be unique: {uids}"
    for path in DASHBOARDS:
        dashboard = load_dashboard(path)
        assert dashboard["timezone"] == "Asia/Shanghai", path.name
        assert "govmesh" in dashboard["tags"], path.name
        assert dashboard["templating"]["list"][0] == {
            "name": "datasource",
            "type": "datasource",
            "query": "prometheus",
            "label": "Prometheus",
        }, path.name
        panels = dashboard["panels"]
        ids = [panel["id"] for panel in panels]
        assert len(set(ids)) == len(ids), f"{path.name}: panel ids must be unique: {ids}"
        cells: dict[tuple[int, int], str] = {}
        for panel in panels:
            where = f"{path.name} panel {panel['id']} ({panel['title']})"
            assert panel["datasource"] == DATASOURCE, where
            assert panel["targets"] and all(t["expr"].strip() and t["refId"] for t in panel["targets"]), where
            grid = panel["gridPos"]
            assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, where
            for x in range(grid["x"], grid["x"] + grid["w"]):
                for y in range(grid["y"], grid["y"] + grid["h"]):
                    assert (x, y) not in cells, f"{where} overlaps {cells[(x, y)]}"
                    cells[(x, y)] = where


def test_crowd_and_health_alerts_explain_themselves_in_english() -> None:
    alerts = explained_alerts()
    assert len(alerts) == 10
    for rule in alerts:
        name, annotations = rule["alert"], rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook"}, name
        assert rule["labels"]["severity"] in {"page", "ticket"}, name
        assert all(text.isascii() for text in annotations.values()), f"{name}: annotations are in English"
        assert len(annotations["description"].split()) >= 15 and len(annotations["runbook"].split()) >= 15, name
        # Every label the alert keeps is named where the reader looks.
        kept = {label.strip() for group in re.findall(r"\bby \(([^)]*)\)", rule["expr"]) for label in group.split(",")}
        for label in kept - {"le"}:
            assert f"$labels.{label}" in annotations["description"], f"{name}: description does not say {label}"
            if label != "govmesh_service":
                assert f"$labels.{label}" in annotations["summary"], f"{name}: summary does not say {label}"


def test_crowd_and_health_alerts_are_tested_firing_and_quiet() -> None:
    tests = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())["tests"]
    cases = [case for test in tests for case in test.get("alert_rule_test", [])]
    for rule in explained_alerts():
        name = rule["alert"]
        outcomes = [bool(case["exp_alerts"]) for case in cases if case["alertname"] == name]
        assert True in outcomes, f"{name} has no promtool test where it fires"
        assert False in outcomes, f"{name} has no promtool test where it stays quiet"


def test_crowd_ingest_is_scraped_like_the_other_crowd_processes() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    targets = {
        (job["job_name"], target): group["labels"]
        for job in config["scrape_configs"]
        for group in job["static_configs"]
        for target in group["targets"]
    }
    assert targets[("govmesh-ingest", "127.0.0.1:9125")] == {"govmesh_service": "crowd"}
    assert targets[("govmesh-api", "127.0.0.1:9105")] == targets[("govmesh-worker", "127.0.0.1:9115")]
    # GovmeshProcessDown watches every govmesh-* job, the ingest process included.
    assert all(job["job_name"].startswith("govmesh-") for job in config["scrape_configs"])
