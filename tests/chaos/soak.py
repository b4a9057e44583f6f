"""The soak: half the rated load for a long while (30 minutes in `make chaos`), no fault, and the
mesh's memory, open file descriptors, queue depths and outbox backlog sampled every 30 s. Flat
means the last third of the run grew no more than a small margin over the middle third: a leak
grows steadily, a warm cache does not."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from .audit import EventTap, count, settle
from .infra import PrivateBroker, PrivatePostgres
from .load import Load, Rates
from .mesh import SERVICES, ChaosMesh, wait_until
from .scenarios import SETTINGS, processes_of, resources

#: The rated load this machine (2 cores) carries at once, all streams together: measured by
#: `make bench` per stream, and lowered until the three together kept up on SQLite.
RATED = Rates(cases=8, records=100, grpc_readings=500, broker_readings=500, zones=8)

#: Growth allowed from the middle third to the last third of the run.
MARGIN = {"rss_kib": 0.10, "fds": 0.10}


def _slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs (0 with fewer than two points)."""
    if len(xs) < 2 or len(set(xs)) < 2:
        return 0.0
    return statistics.linear_regression(xs, ys).slope


def _backlog(mesh: ChaosMesh) -> int:
    total = 0
    for service in SERVICES:
        url = mesh.database_url(service)
        engine = sa.create_engine(
            url, connect_args={"options": f"-csearch_path={service}"} if url.startswith("postgresql") else {}
        )
        try:
            with engine.connect() as connection:
                total += connection.execute(
                    sa.text("SELECT count(*) FROM outbox WHERE published_at IS NULL")
                ).scalar_one()
        finally:
            engine.dispose()
    return total


def soak(broker: PrivateBroker, postgres: PrivatePostgres | None, tmp_path: Path, minutes: float) -> dict[str, Any]:
    vhost = broker.add_vhost()
    url = postgres.create_database() if postgres is not None else f"sqlite:///{tmp_path / 'service.db'}"
    mesh = ChaosMesh(url, broker.uri_of(vhost), tmp_path, SETTINGS)
    samples: list[dict[str, Any]] = []
    try:
        mesh.start()
        tap = EventTap(mesh.amqp_uri)
        load = Load(mesh, RATED.scaled(0.5))
        load.prepare()
        load.start()
        began = time.monotonic()
        while time.monotonic() - began < minutes * 60:
            time.sleep(min(30.0, max(0.0, minutes * 60 - (time.monotonic() - began))))
            depths = broker.queue_depths(vhost)
            samples.append(
                {
                    "minute": round((time.monotonic() - began) / 60, 2),
                    **resources(processes_of(mesh)),
                    "queued": sum(n for q, n in depths.items() if not q.startswith("chaos-audit.")),
                    "outbox_backlog": _backlog(mesh),
                    "cases_accepted": len(load.ledger.case_ids),
                }
            )
        load.stop()
        settle(mesh, load.ledger, 300)
        wait_until(lambda: _backlog(mesh) == 0, timeout=60)
        result = count(mesh, broker, vhost, load.ledger, tap)
    finally:
        mesh.stop()
    # Memory that grows steadily is a leak even when it grows slowly: each process's trend over
    # the second half, in MiB an hour (a warm cache levels off; a leak keeps its slope).
    second_half = samples[len(samples) // 2 :]
    trend = {
        name: round(
            _slope([s["minute"] for s in second_half], [s["rss_kib_by_process"].get(name, 0) for s in second_half])
            * 60
            / 1024,
            1,
        )
        for name in (second_half[-1]["rss_kib_by_process"] if second_half else {})
    }
    third = max(1, len(samples) // 3)
    middle, last = samples[third : 2 * third] or samples, samples[-third:]
    growth = {
        key: (max(s[key] for s in last) - max(s[key] for s in middle)) / max(1, max(s[key] for s in middle))
        for key in MARGIN
    }
    backlog_flat = max(s["outbox_backlog"] for s in last) <= max(100, 2 * max(s["outbox_backlog"] for s in middle))
    queues_flat = max(s["queued"] for s in last) <= max(1000, 2 * max(s["queued"] for s in middle))
    flat = all(growth[key] <= MARGIN[key] for key in MARGIN) and backlog_flat and queues_flat
    totals = result.totals()
    return {
        "minutes": minutes,
        "rates": RATED.scaled(0.5).__dict__,
        "growth_last_third_over_middle": {k: round(v, 3) for k, v in growth.items()},
        "rss_trend_mib_per_hour_by_process": trend,
        "flat": flat and not (totals["lost"] or totals["duplicated"] or totals["stuck"]),
        "accepted": result.accepted,
        **totals,
        "samples": samples,
    }
