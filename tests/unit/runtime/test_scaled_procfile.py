"""`make run`'s Procfile under GOVMESH_SCALE (scripts/scaled_procfile.py), run as make runs it."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

from tests.support.mesh import free_port

ROOT = Path(__file__).resolve().parents[3]


def scaled(scale: str | None, *options: str, **environ: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GOVMESH_SCALE", "GOVMESH_PROMETHEUS")} | environ
    if scale is not None:
        env["GOVMESH_SCALE"] = scale
    return subprocess.run(
        [sys.executable, "scripts/scaled_procfile.py", "Procfile", *options],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_without_a_scale_the_procfile_is_run_as_it_is() -> None:
    result = scaled(None)
    assert result.returncode == 0, result.stderr
    original = [line for line in (ROOT / "Procfile").read_text().splitlines() if line.strip()]
    assert result.stdout.splitlines() == original


#: Workers scale on PostgreSQL only (test_workers_on_sqlite_are_not_scaled...).
ON_POSTGRESQL = {"DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/govmesh"}


def test_a_scaled_process_becomes_numbered_instances_that_know_which_they_are() -> None:
    result = scaled("records-api=2, approvals-worker=3,crowd-ingest=0", **ON_POSTGRESQL)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "records-api-0: GOVMESH_INSTANCE=0 GOVMESH_INSTANCES=2 govmesh api records" in lines
    assert "records-api-1: GOVMESH_INSTANCE=1 GOVMESH_INSTANCES=2 govmesh api records" in lines
    assert [line.split(":")[0] for line in lines if "worker approvals" in line] == [
        "approvals-worker-0",
        "approvals-worker-1",
        "approvals-worker-2",
    ]
    assert not any("ingest crowd" in line for line in lines), "a count of 0 leaves the process out"
    assert "identity-api: govmesh api identity" in lines, "the others are left as they are"
    names = [re.match(r"[\w-]+", line).group() for line in lines]  # type: ignore[union-attr]
    assert len(names) == len(set(names)), "every process has a name of its own"


def test_a_bad_scale_is_refused_naming_what_is_wrong_and_writes_nothing() -> None:
    for scale, reason in [
        ("records-apii=2", "'records-apii' is not a process of the Procfile"),
        ("records-api", "'records-api' is not name=count"),
        ("records-api=two", "records-api: 'two' is not a count"),
        ("records-api=65", "records-api: '65' is not a count from 0 to 64"),
        ("records-api=2,records-api=3", "records-api is named twice"),
    ]:
        result = scaled(scale)
        assert result.returncode == 2, scale
        assert reason in result.stderr and result.stderr.startswith("GOVMESH_SCALE: "), result.stderr
        assert result.stdout == ""


def test_workers_on_sqlite_are_not_scaled_saying_why_and_what_to_give_them() -> None:
    """Two relays of one SQLite database would each publish every event: refused, naming the
    process and the setting; apis and ingest processes scale on SQLite as before."""
    on_sqlite = {"DATABASE_URL": "sqlite:///var/x.db", "APPROVALS_DATABASE_URL": "sqlite:///var/approvals.db"}
    result = scaled("records-api=2,approvals-worker=2", **on_sqlite)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("GOVMESH_SCALE: approvals-worker=2: the approvals workers run once on SQLite")
    assert "APPROVALS_DATABASE_URL" in result.stderr
    assert scaled("records-api=2,crowd-ingest=2", **on_sqlite).returncode == 0
    # One service's own PostgreSQL is enough for its workers, whatever the others use.
    on_postgresql = on_sqlite | {"APPROVALS_DATABASE_URL": ON_POSTGRESQL["DATABASE_URL"]}
    assert scaled("approvals-worker=2", **on_postgresql).returncode == 0


def test_prometheus_is_told_where_every_instance_past_the_first_serves_its_metrics(tmp_path: Path) -> None:
    targets = tmp_path / "prometheus"
    result = scaled("records-api=3,crowd-ingest=2", "--prometheus-targets", str(targets))
    assert result.returncode == 0, result.stderr
    api = json.loads((targets / "api.json").read_text())
    assert [(g["targets"], g["labels"]["govmesh_instance"]) for g in api] == [
        (["127.0.0.1:9202"], "1"),
        (["127.0.0.1:9302"], "2"),
    ]
    assert all(g["labels"]["govmesh_service"] == "records" for g in api)
    assert json.loads((targets / "ingest.json").read_text())[0]["targets"] == ["127.0.0.1:9225"]
    assert json.loads((targets / "worker.json").read_text()) == []
    assert scaled(None, "--prometheus-targets", str(targets)).returncode == 0
    assert json.loads((targets / "api.json").read_text()) == [], "scaled back down: no longer scraped"


def test_make_runs_prometheus_beside_the_mesh_reading_those_targets(tmp_path: Path) -> None:
    port = free_port()
    with_prometheus = ("--prometheus-targets", str(tmp_path / "targets"), "--with-prometheus")
    result = scaled(None, *with_prometheus, PROMETHEUS_PORT=str(port), PROMETHEUS_DATA=str(tmp_path / "data"))
    assert result.returncode == 0, result.stderr
    line = result.stdout.splitlines()[-1]
    assert line == (
        f"prometheus: python scripts/run_prometheus.py --targets {tmp_path / 'targets'} --data {tmp_path / 'data'} "
        f"--port {port}"
    )
    assert f"Prometheus http://127.0.0.1:{port}" in result.stderr

    left_out = scaled(None, *with_prometheus, GOVMESH_PROMETHEUS="0")
    assert "prometheus" not in left_out.stdout and "GOVMESH_PROMETHEUS=0" in left_out.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        busy = scaled(None, *with_prometheus, PROMETHEUS_PORT=str(port))
    assert busy.returncode == 0, "the mesh runs without Prometheus"
    assert "prometheus" not in busy.stdout and f"127.0.0.1:{port} is taken" in busy.stderr
