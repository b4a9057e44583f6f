"""`make bench`'s records benchmark, in small: every part of it runs against the real mesh and
keeps its figures, so the benchmark cannot rot between the runs that measure (its full size, a
million entries on both databases, is `make bench`'s)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support.mesh import ROOT

SMALL = ("--database", "sqlite", "--seconds", "0.5", "--log-size", "3000", "--callers", "1", "4")


def test_the_records_benchmark_runs_end_to_end_and_keeps_every_figure(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "tests.bench.records", *SMALL],
        cwd=ROOT,
        env={**os.environ, "GOVMESH_BENCH_RESULTS": str(tmp_path), "GOVMESH_BENCH_RUN": "smoke"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    figures = json.loads((tmp_path / "smoke.json").read_text())["benchmarks"]["records-sqlite"]["figures"]
    rows = {(figure["section"], figure["name"].split(",")[0]): figure for figure in figures}
    under_load = [f for f in figures if f["section"] == "GetProof under concurrency"]
    assert len(under_load) == 4 and all(f["per_second"] > 0 for f in under_load), under_load
    sealing = [f for f in figures if f["section"] == "read -> sealed"]
    assert len(sealing) == 1 and 0 < sealing[0]["p50_ms"] <= sealing[0]["max_ms"], sealing
    large = {name: figure for (section, name), figure in rows.items() if section == "a large log"}
    assert large["VerifyAuditTrail"]["entries"] >= 3000, large
    assert large["sealed by records' worker"]["entries"] > 0, large
    assert {"ListAccesses", "GetConsistencyProof", "bare grpcio server ListAccesses (baseline)"} <= set(large), large
