"""The verdict of a `make bench` run: every target the issues set, beside the figure measured, its
baseline from the same run, the ratio, and met / not met.

    .venv/bin/python -m tests.bench.verdict [bench/results/<run>.json]

Without a file it reads the run GOVMESH_BENCH_RUN names (make bench sets it), else the newest.
Prints one table, and for the run GOVMESH_BENCH_RUN names writes the verdicts into its file
("verdicts", each with "met": true or false); a file named on the command line, or the newest run,
is only read (judging a committed run again left it changed). A target whose figure the run did not
measure is "not measured" and not met: a target is met only by a figure. The targets live here, in
one list, with the issue that set them; the benchmarks only record figures
(tests/bench/results.py)."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.bench import results


@dataclass(frozen=True)
class Figure:
    """One recorded figure: the benchmark (e.g. "records-postgresql"), its section and row name
    as the benchmark recorded them, and which of the row's numbers."""

    benchmark: str
    section: str
    name: str
    field: str


@dataclass(frozen=True)
class Target:
    label: str
    issue: int
    figure: Figure
    #: The figure itself must be at least / at most this.
    at_least: float | None = None
    at_most: float | None = None
    #: Or the figure divided by this baseline (same run) must be at least ``ratio_at_least``.
    baseline: Figure | None = None
    ratio_at_least: float | None = None
    unit: str = ""

    def describe(self) -> str:
        if self.ratio_at_least is not None:
            return f">= {self.ratio_at_least:g}x baseline"
        if self.at_least is not None:
            return f">= {self.at_least:g} {self.unit}".rstrip()
        return f"<= {self.at_most:g} {self.unit}".rstrip()


def _proofs(callers: int, processes: int = 1) -> Figure:
    scaled = "" if processes == 1 else f" ({processes} api processes)"
    name = f"records api GetProof{scaled}, {callers} callers"
    return Figure("records-postgresql", "GetProof under concurrency", name, "per_second")


_PROOFS_16 = _proofs(16, 2)
# The bare server in a process of its own, as the identity api is (the other one shares the
# callers' process and its GIL).
_BARE_GRPC = Figure("identity", "sequential unary gRPC", "bare grpcio server, own process (baseline)", "per_second")
_BURST = "200 ride-hailing cases at once"
_BATCHES = "identity api RegisterSubjects, batches of 500"
_MILLION = "1,000,000 people"


def _at_most(label: str, issue: int, figure: Figure, bound: float, unit: str = "") -> Target:
    return Target(label, issue, figure, at_most=bound, unit=unit)


def _at_least(label: str, issue: int, figure: Figure, bound: float, unit: str) -> Target:
    return Target(label, issue, figure, at_least=bound, unit=unit)


def _records_on_both(label: str, section: str, name: str, field: str, bound: float, unit: str) -> tuple[Target, ...]:
    """An issue 12 bound on records, on SQLite and on PostgreSQL."""
    return tuple(
        _at_most(f"records: {label}, {database}", 12, Figure(f"records-{database}", section, name, field), bound, unit)
        for database in ("sqlite", "postgresql")
    )


_OFFERED = "50 ride-hailing cases/s offered"

TARGETS: tuple[Target, ...] = (
    # Issue 12: records' access log.
    _at_least("records: GetProof, 16 callers, PostgreSQL", 12, _PROOFS_16, 600, "proofs/s"),
    Target("records: GetProof, 16 callers vs 1, PostgreSQL", 12, _PROOFS_16, baseline=_proofs(1, 2), ratio_at_least=4),
    _at_most(
        "records: GetProof p99, 16 callers, PostgreSQL",
        12,
        Figure("records-postgresql", "GetProof under concurrency", _PROOFS_16.name, "p99_ms"),
        50,
        "ms",
    ),
    *_records_on_both("read -> sealed p99", "read -> sealed", "entries of the GetProof load", "p99_ms", 2000, "ms"),
    *_records_on_both("VerifyAuditTrail, 1,000,000 entries", "a large log", "VerifyAuditTrail", "seconds", 60, "s"),
    # The issue gives this one no percentile, unlike its others: the typical call.
    *_records_on_both(
        "inclusion proof p50 at 1,000,000 entries",
        "a large log",
        "ListAccesses, 1 entry + inclusion proof",
        "p50_ms",
        5,
        "ms",
    ),
    # Issue 13: throughput and scale-out.
    _at_most(
        "approvals: 50 cases/s offered for 60 s, p99 submit -> decided, PostgreSQL",
        13,
        Figure("approvals-postgresql", "offered load", _OFFERED, "p99_ms"),
        1000,
        "ms",
    ),
    _at_most(
        "approvals: 50 cases/s offered, cases lost, PostgreSQL",
        13,
        Figure("approvals-postgresql", "offered load", _OFFERED, "lost"),
        0,
    ),
    _at_most(
        "approvals: a burst of 200 decided, PostgreSQL",
        13,
        Figure("approvals-postgresql", "burst", _BURST, "seconds"),
        5,
        "s",
    ),
    Target(
        "approvals: 2 workers vs 1, cases/s, PostgreSQL",
        13,
        Figure("approvals-postgresql", "burst, 2 workers", _BURST, "per_second"),
        baseline=Figure("approvals-postgresql", "burst", _BURST, "per_second"),
        ratio_at_least=1.5,
    ),
    _at_most(
        "population: 1,000,000 subjects seeded, GetProof p99 at 16 callers, PostgreSQL",
        13,
        Figure("population-postgresql", _MILLION + ": GetProof", "records api GetProof, 16 callers", "p99_ms"),
        50,
        "ms",
    ),
    _at_most(
        "population: 50 cases/s offered against it, p99 submit -> decided",
        13,
        Figure("population-postgresql", _MILLION + ": offered load", _OFFERED, "p99_ms"),
        1000,
        "ms",
    ),
    Target(
        "identity: ValidateIdentifier vs bare grpcio",
        13,
        Figure("identity", "sequential unary gRPC", "identity api ValidateIdentifier", "per_second"),
        baseline=_BARE_GRPC,
        ratio_at_least=0.7,
    ),
    _at_least(
        "identity: registration, 16 callers, PostgreSQL",
        13,
        Figure("identity", "registration, 16 callers, postgresql", _BATCHES, "per_second"),
        3000,
        "subjects/s",
    ),
    Target(
        "events: outbox relay vs bare pika with confirms in flight",
        13,
        Figure("identity", "event publication", "outbox relay (read, batch confirm, mark sent)", "per_second"),
        baseline=Figure("amqp", "publish", "(c) pika SelectConnection, 2,000 in flight", "per_second"),
        ratio_at_least=0.5,
    ),
    _at_least(
        "crowd: readings/s, 1 ingest process, batches",
        13,
        Figure("crowd", "ingestion", "crowd: 1 ingest process, batches of 100, binary", "per_second"),
        20000,
        "readings/s",
    ),
    _at_least(
        "crowd: readings/s, 1 ingest process, one reading per message",
        13,
        Figure("crowd", "ingestion", "crowd: 1 ingest process", "per_second"),
        12000,
        "readings/s",
    ),
    _at_most(
        "crowd: reading -> level_changed p99 under 2,000 readings/s of other zones",
        13,
        Figure("crowd", "under load", "publish -> level_changed received", "p99_ms"),
        100,
        "ms",
    ),
    _at_most(
        "watchers: 1,000 per api process, p99 delivery",
        13,
        Figure("watchers", "1,000 watchers of one api process", "change -> delivered to every watcher", "p99_ms"),
        100,
        "ms",
    ),
)


def find(document: dict[str, Any], figure: Figure) -> float | None:
    """The figure in a run's document. A section matches itself or itself followed by ": ..."
    (e.g. "under load: 20 other zones' readings ..."), a name itself or " ..." before it (e.g.
    "14016 entries of the GetProof load"); the last such row of the run counts."""
    benchmark = document.get("benchmarks", {}).get(figure.benchmark)
    if benchmark is None:
        return None
    found = None
    for row in benchmark["figures"]:
        name_matches = row["name"] == figure.name or row["name"].endswith(" " + figure.name)
        section = row["section"]
        section_matches = section == figure.section or section.startswith(figure.section + ": ")
        if section_matches and name_matches and figure.field in row:
            found = float(row[figure.field])
    return found


def judge(document: dict[str, Any]) -> list[dict[str, Any]]:
    verdicts = []
    for target in TARGETS:
        value = find(document, target.figure)
        baseline = find(document, target.baseline) if target.baseline else None
        ratio = value / baseline if value is not None and baseline else None
        if value is None or (target.baseline is not None and ratio is None):
            met = False
        elif target.ratio_at_least is not None:
            met = ratio is not None and ratio >= target.ratio_at_least
        elif target.at_least is not None:
            met = value >= target.at_least
        else:
            met = target.at_most is not None and value <= target.at_most
        verdicts.append(
            {
                "target": target.label,
                "issue": target.issue,
                "value": value,
                "baseline": baseline,
                "ratio": None if ratio is None else round(ratio, 3),
                "wanted": target.describe(),
                "measured": value is not None and (target.baseline is None or baseline is not None),
                "met": met,
            }
        )
    return verdicts


def table(verdicts: list[dict[str, Any]]) -> str:
    def number(value: float | None) -> str:
        return "-" if value is None else f"{value:,.6g}"

    lines = [
        f"{'target':<76} {'figure':>10} {'baseline':>10} {'ratio':>7}  {'wanted':<22} verdict",
    ]
    for v in verdicts:
        verdict = "met" if v["met"] else ("not met" if v["measured"] else "not measured")
        ratio = "-" if v["ratio"] is None else f"{v['ratio']:.2f}x"
        lines.append(
            f"{v['target']:<76} {number(v['value']):>10} {number(v['baseline']):>10} {ratio:>7}  "
            f"{v['wanted']:<22} {verdict}"
        )
    met = sum(v["met"] for v in verdicts)
    lines.append(f"{met} of {len(verdicts)} targets met")
    return "\n".join(lines)


def run_file(argv: list[str]) -> Path:
    if len(argv) > 1:
        return Path(argv[1])
    run = os.environ.get("GOVMESH_BENCH_RUN")
    folder = Path(os.environ.get("GOVMESH_BENCH_RESULTS") or results.RESULTS)
    if run:
        return folder / f"{run}.json"
    runs = sorted(folder.glob("*.json"))
    if not runs:
        raise SystemExit(f"no benchmark run in {folder}: run make bench")
    return runs[-1]


def main(argv: list[str]) -> int:
    path = run_file(argv)
    document = json.loads(path.read_text())
    document["verdicts"] = judge(document)
    if len(argv) == 1 and os.environ.get("GOVMESH_BENCH_RUN"):  # the run make bench is making
        path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    print(f"verdict of {path.name}")
    print(table(document["verdicts"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
