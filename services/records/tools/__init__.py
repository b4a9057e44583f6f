"""Tools of the records service (the public data platform).

Imported whenever the command line is built, so standard library only: each tool's module is
imported when it runs (docs/decisions/runtime-service-tools-found-by-name.md)."""

from __future__ import annotations

import argparse
from typing import Any


def run_seed(settings: Any, args: argparse.Namespace) -> int:
    from services.records.tools import seed

    return seed.main(settings, args)


def register(tools: Any) -> None:
    """Adds this service's tools to `govmesh records` (an argparse sub-parsers action); each
    sets ``run(settings, args) -> exit code``."""
    seed = tools.add_parser(
        "seed",
        help="Load a deterministic synthetic population through the real department feeds (needs `make run`).",
        description="Generate residents and enterprises with valid identifiers and the records of every "
        "department at realistic rates, and publish them department by department over PublishRecords, "
        "as each department's own caller. Idempotent: a second run stores nothing new.",
    )
    seed.add_argument("--subjects", type=int, default=1000, help="how many residents and enterprises (default 1000)")
    seed.add_argument("--seed", type=int, default=2019, help="the population's seed: same seed, same people")
    seed.add_argument("--quiet", action="store_true", help="no progress bar")
    seed.add_argument(
        "--no-samples", action="store_true", help="do not print the synthetic people to try (identifiers in clear)"
    )
    seed.set_defaults(run=run_seed)
