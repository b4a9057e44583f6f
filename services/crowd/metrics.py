"""Crowd's figures, shared by the api, ingest and worker processes (no gRPC here).

Readings are counted where they are applied (the ingest process for the broker's stream, the api
for ReportReadings), by path and outcome, and refusals by reason; a reading's zone id is never a
label unless the zone exists (an unknown zone id is the caller's typo, and labels must stay
bounded). Level changes and silences are counted from the events each committed batch caused.
Occupancy and level per zone are gauges the worker refreshes from the database, so they are right
whichever process applied the readings. Reading-to-decision latency is the wall time from a
reading's observation to the committed level change it caused."""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Sequence

from google.protobuf.message import Message
from prometheus_client import Counter, Gauge, Histogram

from govmesh import clock
from govmesh.crowd.v1 import crowd_pb2 as pb
from govmesh.crowd.v1 import events_pb2
from services.crowd import contract
from services.crowd.domain import levels, occupancy
from services.crowd.domain.decisions import ZoneState

READINGS = Counter(
    "govmesh_crowd_readings_total",
    "Sensor readings received, by path (broker, grpc) and outcome (accepted, late, duplicate, rejected).",
    ["path", "outcome"],
)
REJECTIONS = Counter("govmesh_crowd_readings_rejected_total", "Readings refused, by reason.", ["reason"])
BATCHES = Histogram(
    "govmesh_crowd_ingest_batch_size",
    "Readings applied per transaction.",
    ["path"],
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2000),
)
LEVEL_CHANGES = Counter(
    "govmesh_crowd_level_changes_total", "Response level changes, by zone and new level.", ["zone", "level"]
)
SILENCES = Counter("govmesh_crowd_sensor_silences_total", "Sensors flagged silent, by zone.", ["zone"])
DECISION_LATENCY = Histogram(
    "govmesh_crowd_reading_to_decision_seconds",
    "From a reading's observation to the level change it caused, committed.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
OCCUPANCY = Gauge("govmesh_crowd_zone_occupancy", "Estimated people in the zone now.", ["zone"])
LOAD_BP = Gauge("govmesh_crowd_zone_load_bp", "Occupancy over capacity, in basis points.", ["zone"])
LEVEL = Gauge("govmesh_crowd_zone_level", "Response level now: 0 none, 1 III, 2 II, 3 I.", ["zone"])
SENSORS_HEALTHY = Gauge("govmesh_crowd_zone_sensors_healthy", "Sensors reporting now.", ["zone"])
SENSORS_TOTAL = Gauge("govmesh_crowd_zone_sensors_total", "Sensors known.", ["zone"])

#: Readings older than this when they changed a level were replayed or backfilled, not live.
REPLAY_SECONDS = 3600.0
OUTCOMES = ("accepted", "late", "duplicate", "rejected")


def prime(path: str) -> None:
    """Every series of this process present from the start, at zero."""
    for outcome in OUTCOMES:
        READINGS.labels(path, outcome)
    for reason in pb.ReadingRejectionReason.keys():
        if not reason.endswith("UNSPECIFIED"):
            REJECTIONS.labels(reason.removeprefix("READING_REJECTION_REASON_").lower())


def count_readings(path: str, accepted: int, late: int, duplicates: int, rejected_reasons: Sequence[str]) -> None:
    READINGS.labels(path, "accepted").inc(accepted - late)
    READINGS.labels(path, "late").inc(late)
    READINGS.labels(path, "duplicate").inc(duplicates)
    READINGS.labels(path, "rejected").inc(len(rejected_reasons))
    for reason in rejected_reasons:
        REJECTIONS.labels(reason).inc()
    if accepted:
        BATCHES.labels(path).observe(accepted)


def count(events: Sequence[Message]) -> None:
    for event in events:
        if isinstance(event, events_pb2.LevelChanged):
            level = contract.level_of(event.level)
            LEVEL_CHANGES.labels(event.zone_id, level.name if level is not None else "UNSPECIFIED").inc()
            if event.HasField("triggered_by_observed_at"):
                # Counted after the commit: the transaction and its lock waits are in the figure.
                observed = event.triggered_by_observed_at.ToDatetime(datetime.UTC)
                latency = (clock.now() - observed).total_seconds()
                # A replayed day (readings from the past applied now) is not a live decision.
                if latency < REPLAY_SECONDS:
                    DECISION_LATENCY.observe(max(0.0, latency))
        elif isinstance(event, events_pb2.SensorSilent):
            SILENCES.labels(event.zone_id).inc()


def observe(zones: Iterable[ZoneState]) -> None:
    for zone in zones:
        zone_id, live = zone.config.zone_id, zone.live
        OCCUPANCY.labels(zone_id).set(live.occupancy)
        LOAD_BP.labels(zone_id).set(levels.load_bp(live.occupancy, zone.config.capacity))
        LEVEL.labels(zone_id).set(zone.level.level)  # zones.Level's value: 0 none .. 3 for I
        SENSORS_HEALTHY.labels(zone_id).set(occupancy.sensors_healthy(live))
        SENSORS_TOTAL.labels(zone_id).set(occupancy.sensors_total(live))
