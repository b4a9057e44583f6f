"""The config `make run`'s Prometheus reads (scripts/run_prometheus.py): deploy/prometheus's, with
each target where its process serves /metrics in this environment."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts import run_prometheus

DEPLOYED: dict[str, Any] = yaml.safe_load((run_prometheus.DEPLOY / "prometheus.yml").read_text(encoding="utf-8"))


def targets_of(config: dict[str, Any], job: str) -> dict[str, list[str]]:
    scrape = next(s for s in config["scrape_configs"] if s["job_name"] == job)
    return {group["labels"]["govmesh_service"]: group["targets"] for group in scrape["static_configs"]}


def test_a_process_told_another_metrics_port_is_scraped_there(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECORDS_API_METRICS_PORT", "19302")
    monkeypatch.delenv("IDENTITY_API_METRICS_PORT", raising=False)
    config = run_prometheus.config(DEPLOYED, tmp_path)
    assert targets_of(config, "govmesh-api")["records"] == ["127.0.0.1:19302"]
    assert targets_of(config, "govmesh-api")["identity"] == ["127.0.0.1:9101"], "the others as deployed"
    assert config["rule_files"] == [str(run_prometheus.DEPLOY / "alerts.yml")]
    files = [sd["files"] for s in config["scrape_configs"] for sd in s["file_sd_configs"]]
    assert files == [[str(tmp_path / f"{kind}.json")] for kind in ("api", "worker", "ingest")]


def test_a_deployed_target_off_its_process_default_port_is_refused(tmp_path: Path) -> None:
    wrong = copy.deepcopy(DEPLOYED)
    worker = next(s for s in wrong["scrape_configs"] if s["job_name"] == "govmesh-worker")
    worker["static_configs"][3]["targets"] = ["127.0.0.1:9115"]  # health's slot, crowd's port
    with pytest.raises(SystemExit, match=r"scrapes health at 127\.0\.0\.1:9115, but the health worker serves"):
        run_prometheus.config(wrong, tmp_path)
