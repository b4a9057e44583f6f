"""The figures of a `make bench` run, kept as JSON beside the printed tables.

Each benchmark records its figures here as it prints them; at its end it appends them to one file
per run, bench/results/<GOVMESH_BENCH_RUN>.json (make bench names the run by its UTC start time, so
every benchmark of one run lands in one file), with the commit and the machine's load, so a figure
can be set beside its baseline of the same run and beside earlier runs. GOVMESH_BENCH_RESULTS
names another folder (the suite's smoke runs keep theirs out of bench/results)."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results"

_figures: list[dict[str, Any]] = []


def record(section: str, name: str, **figures: float | int | str) -> None:
    """One row of a benchmark's table: what was measured (``name``, under ``section``) and its
    figures (rates per second, latencies in ms, the baseline's name where the row is one)."""
    _figures.append({"section": section, "name": name, **figures})


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def write(benchmark: str, settings: dict[str, Any]) -> Path:
    """Adds this benchmark's figures to the run's file and returns its path."""
    run = os.environ.get("GOVMESH_BENCH_RUN") or datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    folder = Path(os.environ.get("GOVMESH_BENCH_RESULTS") or RESULTS)
    path = folder / f"{run}.json"
    folder.mkdir(parents=True, exist_ok=True)
    document: dict[str, Any] = (
        json.loads(path.read_text())
        if path.exists()
        else {
            "run": run,
            "commit": _commit(),
            "cpus": os.cpu_count(),
            "benchmarks": {},
        }
    )
    entry = {
        "settings": settings,
        "finished_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "load_average": round(os.getloadavg()[0], 2),
        "figures": list(_figures),
    }
    earlier = document["benchmarks"].get(benchmark)
    if earlier is not None:
        # The same benchmark run again in one run (a part of it, e.g. crowd's --latency-only):
        # its new rows replace the rows of the same name, the others stay, with the settings and
        # time they were measured with.
        new = {(f["section"], f["name"]) for f in _figures}
        kept = [f for f in earlier["figures"] if (f["section"], f["name"]) not in new]
        if kept:
            entry["figures"] = kept + entry["figures"]
            earlier_parts = earlier.pop("earlier", [])
            earlier_parts.append({k: earlier[k] for k in ("settings", "finished_at", "load_average")})
            entry["earlier"] = earlier_parts
    document["benchmarks"][benchmark] = entry
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    _figures.clear()
    return path


def keep(benchmark: str, settings: dict[str, Any]) -> None:
    """Writes the figures (see `write`) and says where they are."""
    path = write(benchmark, settings)
    print(f"figures kept in {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
