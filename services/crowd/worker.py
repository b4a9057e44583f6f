"""Crowd's worker: the outbox relay (level_changed and sensor_silent reach integrators from it),
a timer that finds silent sensors, ages out their estimates and lowers levels whose dwell has
ended (CrowdApp.run_timers), and the per-zone gauges. Readings are not consumed here but by the
ingest process (docs/decisions/crowd-ingest-process.md)."""

from __future__ import annotations

import logging
import time

from nameko.timer import timer

from govmesh.outbox import Outbox
from govmesh.worker import Application, OutboxRelayRunner
from services.crowd import bootstrap, metrics, store
from services.crowd.bootstrap import EVENT_RELAY_INTERVAL, Parts

log = logging.getLogger(__name__)

#: How often the worker reads every zone's status into the gauges.
GAUGES_SECONDS = 5.0


class Worker:
    name = "crowd"

    parts: Parts = Application(bootstrap.build)
    outbox_relay = OutboxRelayRunner(Outbox("crowd", store.outbox, store.inbox), idle_interval=EVENT_RELAY_INTERVAL)

    @timer(interval=1)  # type: ignore[untyped-decorator]
    def run_timers(self) -> None:
        parts = self.parts
        queued = parts.crowd.run_timers()
        if queued:
            log.info("zone timers queued %d events", queued)
        if time.monotonic() >= parts.gauges_due:
            parts.gauges_due = time.monotonic() + GAUGES_SECONDS
            metrics.observe(parts.crowd.statuses().values())
