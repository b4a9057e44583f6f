"""Crowd's composition root: the parts every process kind runs with. Crowd calls no other service,
so the api, the worker, the ingest process and the tools are built alike."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from govmesh.config import ProcessKind, Settings
from govmesh.db import Database
from services.crowd import metrics
from services.crowd.app import CrowdApp

#: How often the worker's outbox relay looks for new events when idle: level_changed is what starts
#: barriers and metro skips, so it leaves within 20 ms of its commit (an indexed look at the outbox
#: 50 times a second is cheap next to that); on SQLite sooner, as the relay also looks every 2 ms
#: whether anything committed (govmesh.outbox.COMMIT_LOOK_SECONDS).
EVENT_RELAY_INTERVAL: Final = 0.02


@dataclass
class Parts:
    crowd: CrowdApp
    #: When the worker next reads every zone's status into the gauges (time.monotonic()).
    gauges_due: float = 0.0


def build(settings: Settings, db: Database, process: ProcessKind) -> Parts:
    # Every process counts the events it commits (its own /metrics), whichever kind it is.
    return Parts(crowd=CrowdApp(db, on_events=metrics.count))
