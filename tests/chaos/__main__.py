"""`make chaos`: every fault scenario on SQLite and PostgreSQL, then the soak; the counts go to
chaos/results/<UTC start>.json and a table. Exit status 1 when anything was lost, duplicated or
stuck, a process did not recover by itself, or the mesh answered INTERNAL or UNKNOWN.

    python -m tests.chaos                                # every scenario, both databases
    python -m tests.chaos --scenario worker-kill --database sqlite --seconds 30
    python -m tests.chaos --scenario none --soak-minutes 30   # the soak alone"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .infra import PrivateBroker, PrivateCluster, PrivatePostgres
from .load import Rates
from .scenarios import SCENARIOS, Outcome, run
from .soak import soak

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "chaos" / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", nargs="+", default=["all"], help=f"all, none, or of: {', '.join(SCENARIOS)}")
    parser.add_argument("--database", nargs="+", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"])
    parser.add_argument("--seconds", type=float, default=60, help="load per scenario (the fault a third of the way in)")
    parser.add_argument("--soak-minutes", type=float, default=0, help="then a soak at half the rated load")
    parser.add_argument("--soak-database", default="postgresql", choices=["sqlite", "postgresql"])
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    names = list(SCENARIOS) if args.scenario == ["all"] else [n for n in args.scenario if n != "none"]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"--scenario: no scenario named {', '.join(unknown)} (known: {', '.join(SCENARIOS)})")

    started = datetime.datetime.now(datetime.UTC)
    document: dict[str, Any] = {
        "run": started.strftime("%Y%m%dT%H%M%SZ"),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip(),
        "settings": {"seconds": args.seconds, "rates": Rates().__dict__},
        "scenarios": [],
    }
    outcomes: list[Outcome] = []
    broker = PrivateBroker()
    cluster = PrivateCluster()  # started when a scenario first needs it
    postgres = PrivatePostgres() if "postgresql" in args.database or args.soak_minutes else None
    try:
        broker.start()
        if postgres is not None:
            postgres.start()
        for database in args.database:
            for name in names:
                # GOVMESH_CHAOS_KEEP=1 keeps each scenario's folder (the processes' logs) for a look.
                with _folder(f"chaos-{name}-") as tmp:
                    began = time.monotonic()
                    if SCENARIOS[name].cluster and not cluster.nodes:
                        cluster.start()
                    outcome = run(
                        SCENARIOS[name],
                        database,
                        cluster if SCENARIOS[name].cluster else broker,
                        postgres if database == "postgresql" else None,
                        Path(tmp),
                        Rates(),
                        args.seconds,
                    )
                outcomes.append(outcome)
                row = outcome.as_json() | {"seconds": round(time.monotonic() - began)}
                document["scenarios"].append(row)
                print(_line(row), flush=True)
        if args.soak_minutes:
            with tempfile.TemporaryDirectory(prefix="chaos-soak-") as tmp:
                document["soak"] = soak(
                    broker, postgres if args.soak_database == "postgresql" else None, Path(tmp), args.soak_minutes
                )
            print(json.dumps({k: v for k, v in document["soak"].items() if k != "samples"}, indent=2), flush=True)
    finally:
        broker.stop()
        cluster.stop()
        if postgres is not None:
            postgres.stop()
    args.results.mkdir(parents=True, exist_ok=True)
    path = args.results / f"{document['run']}.json"
    path.write_text(json.dumps(document, indent=2) + "\n")
    print(f"results: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    clean = all(o.clean for o in outcomes) and document.get("soak", {}).get("flat", True)
    return 0 if clean else 1


@contextlib.contextmanager
def _folder(prefix: str) -> Iterator[str]:
    """A scenario's folder: removed afterwards, unless GOVMESH_CHAOS_KEEP is set (then printed)."""
    if os.environ.get("GOVMESH_CHAOS_KEEP"):
        kept = tempfile.mkdtemp(prefix=prefix)
        print(f"keeping {kept}", flush=True)
        yield kept
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield tmp


HEADER = (
    f"{'scenario':<18} {'database':<10} {'accepted':>22} {'lost':>5} {'dup':>4} {'stuck':>5} {'redeliv':>7} "
    f"{'recovered':>9} {'bugs':>4} {'settle s':>8}"
)


def _line(row: dict[str, Any]) -> str:
    accepted = "/".join(str(row["accepted"].get(k, 0)) for k in ("cases", "records", "readings"))
    return (
        f"{row['scenario']:<18} {row['database']:<10} {accepted:>22} {row['lost']:>5} {row['duplicated']:>4} "
        f"{row['stuck']:>5} {row['redelivered']:>7} {row['recovered']!s:>9} {row['internal_or_unknown_answers']:>4} "
        f"{row['seconds_to_settle']:>8}"
    )


if __name__ == "__main__":
    print(HEADER)
    sys.exit(main())
