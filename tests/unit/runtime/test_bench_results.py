"""make bench keeps one JSON file per run: every benchmark of the run appends its figures to it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bench import results


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
