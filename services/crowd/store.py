"""Crowd's tables: zones and their configuration, each zone's live state and sensors, the
history of level changes, occupancy per 5-minute bucket, and the outbox and inbox.

No personal data: readings are counts. Times are UTC. A zone's live row is the lock of
everything the zone owns: ingestion (the ingest process and the api's ReportReadings) and the
timer lock it (SELECT ... FOR UPDATE on PostgreSQL, in zone id order so two batches never
deadlock; SQLite serialises writers at BEGIN IMMEDIATE), so readings of one zone are applied one
transaction at a time and its count stays exact whoever applies them (repository.py).

Event time: `watermark` is the latest observation time applied and `watermark_wall` the wall
clock when it advanced (docs/decisions/crowd-event-time.md).
"""

from __future__ import annotations

import sqlalchemy as sa

from govmesh.outbox import messaging_tables

metadata = sa.MetaData()

zones = sa.Table(
    "crowd_zones",
    metadata,
    sa.Column("zone_id", sa.String(64), primary_key=True),
    sa.Column("name_zh", sa.String(200), nullable=False),
    sa.Column("name_en", sa.String(200), nullable=False),
    sa.Column("capacity", sa.BigInteger(), nullable=False),
    # JSON: [[level, threshold_bp, [measure, ...]], ...], III then II then I.
    sa.Column("levels", sa.Text(), nullable=False),
    sa.Column("hysteresis_bp", sa.Integer(), nullable=False),
    sa.Column("min_dwell_us", sa.BigInteger(), nullable=False),
    sa.Column("silence_after_us", sa.BigInteger(), nullable=False),
    # JSON: [{name, start_time "HH:MM", duration_s, iso_weekdays, valid_from, valid_to}, ...].
    sa.Column("schedule", sa.Text(), nullable=False),
    # Increases with every upsert: the in-process caches of configurations compare it.
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

live = sa.Table(
    "crowd_zone_live",
    metadata,
    sa.Column("zone_id", sa.String(64), primary_key=True),
    sa.Column("occupancy", sa.BigInteger(), nullable=False),
    # The sum of every gate counter's deltas (the gate source's estimate before clamping).
    sa.Column("gate_total", sa.BigInteger(), nullable=False),
    sa.Column("level", sa.String(8), nullable=False),
    sa.Column("level_since", sa.DateTime(timezone=True), nullable=False),
    sa.Column("watermark", sa.DateTime(timezone=True), nullable=True),
    sa.Column("watermark_wall", sa.DateTime(timezone=True), nullable=True),
    # Wall clock of the last change of any kind (a reading applied, a timer decision).
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    # Wall clock when the timer must look at the zone again (a silence due, an estimate ageing,
    # a held down-move whose dwell ends); NULL: nothing pending.
    sa.Column("review_at", sa.DateTime(timezone=True), nullable=True),
    # Increases with every change: WatchZones polls it to send only what changed.
    sa.Column("version", sa.BigInteger(), nullable=False),
    # Readings applied, late ones included; duplicates and refusals are not counted here.
    sa.Column("readings_applied", sa.BigInteger(), nullable=False),
    sa.Index("ix_crowd_zone_live_review", "review_at"),
    sa.Index("ix_crowd_zone_live_version", "version"),
)

sensors = sa.Table(
    "crowd_sensors",
    metadata,
    sa.Column("zone_id", sa.String(64), primary_key=True),
    sa.Column("sensor_id", sa.String(128), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    # The sensor's state as services.crowd.domain.occupancy keeps it (sequence, missing ranges, value,
    # times, silence), JSON: one row per sensor, rewritten when a reading of it is applied.
    sa.Column("state", sa.Text(), nullable=False),
)

level_changes = sa.Table(
    "crowd_level_changes",
    metadata,
    sa.Column("change_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("zone_id", sa.String(64), nullable=False),
    # Event time (the zone's clock) of the change.
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("previous_level", sa.String(8), nullable=False),
    sa.Column("level", sa.String(8), nullable=False),
    sa.Column("occupancy", sa.BigInteger(), nullable=False),
    sa.Column("load_bp", sa.Integer(), nullable=False),
    # The observation time of the reading that caused it (NULL: decided by the timer).
    sa.Column("triggered_by_observed_at", sa.DateTime(timezone=True), nullable=True),
    # Wall clock of the decision.
    sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_crowd_level_changes_zone", "zone_id", "at"),
)

buckets = sa.Table(
    "crowd_occupancy_buckets",
    metadata,
    sa.Column("zone_id", sa.String(64), primary_key=True),
    # Event time, aligned to 5 minutes (services.crowd.domain.history.BUCKET).
    sa.Column("start", sa.DateTime(timezone=True), primary_key=True),
    sa.Column("max_occupancy", sa.BigInteger(), nullable=False),
    sa.Column("max_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_occupancy", sa.BigInteger(), nullable=False),
    # The mean is sum / samples, one sample per change of the estimate.
    sa.Column("sum_occupancy", sa.BigInteger(), nullable=False),
    sa.Column("samples", sa.BigInteger(), nullable=False),
)

outbox, inbox = messaging_tables(metadata)
