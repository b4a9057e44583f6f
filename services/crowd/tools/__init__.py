"""Tools of the crowd service (the city brain's crowd levels at West Lake).

Imported whenever the command line is built, so standard library only: each tool's module is
imported when it runs (docs/decisions/runtime-service-tools-found-by-name.md)."""

from __future__ import annotations

import argparse
from typing import Any


def run_simulate(settings: Any, args: argparse.Namespace) -> int:
    from services.crowd.tools import simulate

    return simulate.main(settings, args)


def register(tools: Any) -> None:
    """Adds this service's tools to `govmesh crowd` (an argparse sub-parsers action); each sets
    ``run(settings, args) -> exit code``."""
    simulate = tools.add_parser(
        "simulate",
        help="Replay D days of the Hubin music fountain's sensors through the real crowd service (needs `make run`).",
        description="Create a zone of its own (sim_<zone>_<YYYYMMDDHHMMSS>, configured like --zone if the crowd "
        "service has it, else as the West Lake music fountain), publish D days of modelled sensor readings (seven "
        "gate counters, two cameras and a phone-signal estimate every 5 minutes, with silences, re-sends and "
        "late readings) to the broker exchange crowd.readings as the sensors' gateway, wait until the crowd "
        "service has applied them, and print its history of the window (barrier days, time at each level, the "
        "peak) beside the model's truth, a fixed calendar policy and the seed's figures (365 -> 36 barrier "
        "days).\n\n"
        "Time: the window is the D days ending yesterday (Asia/Shanghai), or D days from --start; the service "
        "goes by the readings' own observation times, so no clock offset is needed and a past year replays as "
        "fast as the mesh ingests it.",
    )
    simulate.add_argument("--zone", default="hubin", help="the zone whose configuration to copy (default hubin)")
    simulate.add_argument("--days", type=int, default=365, metavar="D", help="how many days (default 365, at most 400)")
    simulate.add_argument(
        "--start", default=None, metavar="YYYY-MM-DD", help="the first day (default: D days before today)"
    )
    simulate.add_argument("--seed", type=int, default=2019, help="the model's seed: same seed, same crowds")
    simulate.add_argument("--quiet", action="store_true", help="no progress bars")
    simulate.add_argument("--json", action="store_true", help="the barrier days as one JSON document, not the table")
    simulate.set_defaults(run=run_simulate)
