"""Crowd's worker: the outbox relay (level_changed and sensor_silent reach integrators from it),
a timer that finds silent sensors, ages out their estimates and lowers levels whose dwell has
ended (CrowdApp.run_timers), and the per-zone gauges. Readings are not consumed here: the ingest
process (services/crowd/ingest.py) does it in batches, which nameko's worker per message could not."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from nameko.timer import timer

from govmesh.config import ProcessKind, Settings
from govmesh.db import Database
from govmesh.outbox import Outbox
from govmesh.worker import Application, OutboxRelayRunner
from services.crowd import metrics, store
from services.crowd.app import EVENT_RELAY_INTERVAL, CrowdApp

log = logging.getLogger(__name__)

#: How often the worker reads every zone's status into the gauges.
GAUGES_SECONDS = 5.0


@dataclass
class Parts:
    crowd: CrowdApp
    gauges_due: float = 0.0


def _build(settings: Settings, db: Database, process: ProcessKind) -> Parts:
    return Parts(CrowdApp(db, on_events=metrics.count))


class Worker:
    name = "crowd"

    parts: Parts = Application(_build)
    outbox_relay = OutboxRelayRunner(Outbox("crowd", store.outbox, store.inbox), idle_interval=EVENT_RELAY_INTERVAL)

    @timer(interval=1)  # type: ignore[untyped-decorator]
    def run_timers(self) -> None:
        parts = self.parts
        queued = parts.crowd.run_timers()
        if queued:
            log.info("zone timers queued %d events", queued)
        if time.monotonic() >= parts.gauges_due:
            parts.gauges_due = time.monotonic() + GAUGES_SECONDS
            metrics.observe([status for _, status in parts.crowd.statuses().values()])
