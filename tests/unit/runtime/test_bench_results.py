"""make bench keeps one JSON file per run: every benchmark of the run appends its figures to it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bench import results, verdict


def test_the_benchmarks_of_one_run_share_one_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(results, "RESULTS", tmp_path)
    monkeypatch.setenv("GOVMESH_BENCH_RUN", "20261205T120000Z")
    results.record("publish", "bare", per_second=20500)
    results.record("publish", "ours", per_second=23400, of_baseline=1.141)
    first = results.write("amqp", {"messages": 20000})
    results.record("ingestion", "crowd: 1 ingest process", per_second=14873)
    second = results.write("crowd", {"readings": 100000})
    assert first == second == tmp_path / "20261205T120000Z.json"
    document = json.loads(first.read_text())
    assert document["run"] == "20261205T120000Z" and document["cpus"]
    assert [f["name"] for f in document["benchmarks"]["amqp"]["figures"]] == ["bare", "ours"]
    assert document["benchmarks"]["amqp"]["settings"] == {"messages": 20000}
    assert document["benchmarks"]["crowd"]["figures"] == [
        {"section": "ingestion", "name": "crowd: 1 ingest process", "per_second": 14873}
    ]


def test_a_benchmark_run_again_in_one_run_replaces_its_rows_of_the_same_name_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(results, "RESULTS", tmp_path)
    monkeypatch.setenv("GOVMESH_BENCH_RUN", "20261207T040000Z")
    results.record("ingestion", "batches", per_second=54538)
    results.record("latency", "reading -> level_changed", p99_ms=130.0)
    results.write("crowd", {"latency_only": False})
    results.record("latency", "reading -> level_changed", p99_ms=77.0)
    path = results.write("crowd", {"latency_only": True})
    entry = json.loads(path.read_text())["benchmarks"]["crowd"]
    assert [(f["name"], f.get("per_second"), f.get("p99_ms")) for f in entry["figures"]] == [
        ("batches", 54538, None),
        ("reading -> level_changed", None, 77.0),
    ]
    assert entry["settings"] == {"latency_only": True}
    assert [part["settings"] for part in entry["earlier"]] == [{"latency_only": False}]


def test_the_verdict_of_a_run_named_on_the_command_line_leaves_its_file_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(results, "RESULTS", tmp_path)
    monkeypatch.setenv("GOVMESH_BENCH_RUN", "20261206T040000Z")
    results.record("burst", "200 ride-hailing cases at once", per_second=20.0, seconds=10.0)
    path = results.write("approvals-postgresql", {})
    kept = path.read_text()
    assert verdict.main(["verdict", str(path)]) == 0
    assert path.read_text() == kept
    assert "approvals: a burst of 200 decided, PostgreSQL" in capsys.readouterr().out


def test_the_verdict_sets_each_target_beside_its_figure_and_baseline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(results, "RESULTS", tmp_path)
    monkeypatch.setenv("GOVMESH_BENCH_RUN", "20261206T040000Z")
    for callers, rate, p99 in ((1, 200, 6.0), (16, 640, 48.0)):
        name = f"records api GetProof (2 api processes), {callers} callers"
        results.record("GetProof under concurrency", name, per_second=rate, p99_ms=p99)
    results.record("read -> sealed", "14016 entries of the GetProof load", p99_ms=2400.0)
    path = results.write("records-postgresql", {})
    results.record("burst", "200 ride-hailing cases at once", per_second=20.0, seconds=10.0)
    results.record("burst, 2 workers", "200 ride-hailing cases at once", per_second=31.0, seconds=6.5)
    results.write("approvals-postgresql", {})

    assert verdict.main(["verdict"]) == 0
    verdicts = {v["target"]: v for v in json.loads(path.read_text())["verdicts"]}
    assert verdicts["records: GetProof, 16 callers, PostgreSQL"]["met"] is True
    assert verdicts["records: GetProof p99, 16 callers, PostgreSQL"]["met"] is True
    ratio = verdicts["records: GetProof, 16 callers vs 1, PostgreSQL"]
    assert (ratio["value"], ratio["baseline"], ratio["ratio"], ratio["met"]) == (640, 200, 3.2, False)
    sealed = verdicts["records: read -> sealed p99, postgresql"]
    assert sealed["value"] == 2400 and sealed["met"] is False, "a figure past its bound is not met"
    workers = verdicts["approvals: 2 workers vs 1, cases/s, PostgreSQL"]
    assert (workers["value"], workers["baseline"], workers["met"]) == (31, 20, True), "sections are told apart"
    assert verdicts["approvals: a burst of 200 decided, PostgreSQL"]["value"] == 10
    unmeasured = verdicts["identity: ValidateIdentifier vs bare grpcio"]
    assert unmeasured["measured"] is False and unmeasured["met"] is False, "only a figure meets a target"
