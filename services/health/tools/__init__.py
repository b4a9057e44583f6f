"""Tools of the health service (medical credit: treat first, pay later).

Imported whenever the command line is built, so standard library only: each tool's module is
imported when it runs (docs/decisions/runtime-service-tools-found-by-name.md)."""

from __future__ import annotations

import argparse
from typing import Any


def run_simulate(settings: Any, args: argparse.Namespace) -> int:
    from services.health.tools import simulate

    return simulate.main(settings, args)


def register(tools: Any) -> None:
    """Adds this service's tools to `govmesh health` (an argparse sub-parsers action); each sets
    ``run(settings, args) -> exit code``."""
    simulate = tools.add_parser(
        "simulate",
        help="Run a population of patients through the real health service for D days (needs `make run` "
        "with GOVMESH_CLOCK_OFFSET_FILE set).",
        description="Publish city credit scores and insurance enrolments for N synthetic residents to records "
        "(as demo-portal), enrol them in medical credit, and run D simulated days of outpatient visits and "
        "admissions, charges, bills and payments (almost all on time, a few late, a very few never: defaults, "
        "some repaid later) through health's gRPC api; then let the clock run until every bill is paid or "
        "defaulted, and print the scheme's figures (health's GetStats) in the seed's terms.\n\n"
        "Time: the simulator moves the services' clock forward one day at a time by writing the offset file "
        "named by GOVMESH_CLOCK_OFFSET_FILE. The mesh must have been started with the same variable set, e.g.\n"
        "  GOVMESH_CLOCK_OFFSET_FILE=$PWD/var/clock-offset make run\n"
        "  GOVMESH_CLOCK_OFFSET_FILE=$PWD/var/clock-offset govmesh health simulate --patients 200 --days 30\n"
        "Without it the command refuses to run. The clock only moves forward: never point it at production.",
    )
    simulate.add_argument("--patients", type=int, required=True, metavar="N", help="how many residents")
    simulate.add_argument("--days", type=int, required=True, metavar="D", help="how many days of visits")
    simulate.add_argument("--seed", type=int, default=2019, help="the population's seed: same seed, same people")
    simulate.add_argument(
        "--default-share",
        type=float,
        default=0.004,
        metavar="FRACTION",
        help="share of bills never paid in time, i.e. defaults (default 0.004; half are repaid later)",
    )
    simulate.add_argument("--quiet", action="store_true", help="no progress bar")
    simulate.set_defaults(run=run_simulate)
