"""Crowd's rows and domain objects, both ways, and the zone locks.

A zone's live row is the lock of everything the zone owns: ingestion (the ingest process and the
api's ReportReadings) and the timer lock it (:meth:`ZoneRepository.lock_live`) before they read
the zone, so one zone's readings are applied one transaction at a time. Writes are batched: one
statement per table for a whole batch of readings, whatever the number of zones it touched (per
zone statements cost more than the readings themselves)."""

from __future__ import annotations

import datetime
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from govmesh.clock import as_utc
from services.crowd import store
from services.crowd.domain import history, occupancy, zones
from services.crowd.domain.decisions import LevelChanged, ZoneState
from services.crowd.domain.levels import LevelState
from services.crowd.domain.occupancy import SensorState, ZoneLive
from services.crowd.domain.zones import Level, Measure, SensorKind, ZoneConfig, ZoneRecord

#: The live row's columns a unit of work writes back.
_LIVE_COLUMNS = (
    "occupancy",
    "gate_total",
    "level",
    "level_since",
    "watermark",
    "watermark_wall",
    "updated_at",
    "review_at",
    "version",
    "readings_applied",
)


class ConfigCache:
    """Zone configurations, validated once per version: ingestion reads them for every batch."""

    def __init__(self) -> None:
        self._configs: dict[str, tuple[int, ZoneConfig]] = {}

    def of(self, row: Any) -> ZoneConfig:
        cached = self._configs.get(row.zone_id)
        if cached is None or cached[0] != row.version:
            cached = (int(row.version), config_from_row(row))
            self._configs[row.zone_id] = cached
        return cached[1]


def zone_ids(values: Iterable[str]) -> list[str]:
    """The ids that can name a zone, sorted, once each: anything else is looked up nowhere."""
    return sorted({value for value in values if zones.is_zone_id(value)})


class ZoneRepository:
    """The zones of one unit of work (one session): their rows read as domain objects and written back."""

    def __init__(self, session: Session, configs: ConfigCache) -> None:
        self.session = session
        self.configs_cache = configs

    # --------------------------------------------------------------------------------------------
    # Configurations

    def configs(self, ids: Iterable[str] | None = None) -> dict[str, ZoneConfig]:
        """The configurations of these zones (every zone's when None); unknown ids are left out."""
        query = sa.select(store.zones)
        if ids is not None:
            wanted = zone_ids(ids)
            if not wanted:
                return {}
            query = query.where(store.zones.c.zone_id.in_(wanted))
        return {row.zone_id: self.configs_cache.of(row) for row in self.session.execute(query).all()}

    def upsert(self, config: ZoneConfig, now: datetime.datetime) -> tuple[ZoneRecord, bool]:
        """Create the zone, or reconfigure it under its row lock; the record and whether it is new."""
        values = _config_values(config)
        row = self.session.execute(
            sa.select(store.zones).where(store.zones.c.zone_id == config.zone_id).with_for_update()
        ).first()
        if row is None:
            self.session.execute(
                store.zones.insert().values(zone_id=config.zone_id, version=1, created_at=now, updated_at=now, **values)
            )
            self.session.execute(store.live.insert().values(_new_live(config.zone_id, now)))
            return ZoneRecord(config, now, now), True
        self.session.execute(
            store.zones.update()
            .where(store.zones.c.zone_id == config.zone_id)
            .values(version=row.version + 1, updated_at=now, **values)
        )
        # New thresholds or capacity apply at once: the timer decides the level again.
        self.session.execute(
            store.live.update()
            .where(store.live.c.zone_id == config.zone_id)
            .values(review_at=now, version=store.live.c.version + 1)
        )
        return ZoneRecord(config, as_utc(row.created_at), now), False

    # --------------------------------------------------------------------------------------------
    # Live state

    def lock_live(self, ids: Iterable[str]) -> None:
        """The live rows of these zones, locked in zone id order (no two transactions deadlock)."""
        wanted = sorted(set(ids))
        if wanted:
            self.session.execute(
                sa.select(store.live.c.zone_id)
                .where(store.live.c.zone_id.in_(wanted))
                .order_by(store.live.c.zone_id)
                .with_for_update()
            ).all()

    def load(self, configs: dict[str, ZoneConfig], wall_now: datetime.datetime) -> dict[str, ZoneState]:
        """The zones' live state, in zone id order (writers lock the rows first, with lock_live)."""
        ids = sorted(configs)
        if not ids:
            return {}
        live_rows = self.session.execute(
            sa.select(store.live).where(store.live.c.zone_id.in_(ids)).order_by(store.live.c.zone_id)
        ).all()
        sensors: dict[str, dict[str, SensorState]] = defaultdict(dict)
        for row in self.session.execute(sa.select(store.sensors).where(store.sensors.c.zone_id.in_(ids))).all():
            sensors[row.zone_id][row.sensor_id] = _sensor_from_row(row)
        return {
            row.zone_id: _zone_from_row(row, configs[row.zone_id], sensors[row.zone_id], wall_now) for row in live_rows
        }

    def store(self, changed: Sequence[ZoneState], wall_now: datetime.datetime) -> None:
        """Write back the zones a unit of work changed: their live rows and changed sensors."""
        if not changed:
            return
        self.session.execute(
            store.live.update()
            .where(store.live.c.zone_id == sa.bindparam("z"))
            .values({column: sa.bindparam(column) for column in _LIVE_COLUMNS}),
            [_live_values(zone, wall_now) for zone in changed],
        )
        self._store_sensors(changed)

    def _store_sensors(self, changed: Sequence[ZoneState]) -> None:
        inserts: list[dict[str, object]] = []
        updates: list[dict[str, object]] = []
        for zone in changed:
            for sensor_id in sorted(zone.dirty_sensors):
                state = _sensor_json(zone.live.sensors[sensor_id])
                if sensor_id in zone.stored_sensors:
                    updates.append({"z": zone.config.zone_id, "s": sensor_id, "state": state})
                else:
                    kind = zone.live.sensors[sensor_id].kind.value
                    inserts.append(
                        {"zone_id": zone.config.zone_id, "sensor_id": sensor_id, "kind": kind, "state": state}
                    )
            zone.stored_sensors.update(zone.dirty_sensors)
            zone.dirty_sensors.clear()
        if inserts:
            self.session.execute(store.sensors.insert(), inserts)
        if updates:
            self.session.execute(
                store.sensors.update()
                .where(store.sensors.c.zone_id == sa.bindparam("z"), store.sensors.c.sensor_id == sa.bindparam("s"))
                .values(state=sa.bindparam("state")),
                updates,
            )

    # --------------------------------------------------------------------------------------------
    # History

    def add_level_changes(self, changes: Sequence[LevelChanged]) -> None:
        if changes:
            self.session.execute(store.level_changes.insert(), [_level_change_values(c) for c in changes])

    def store_buckets(self, tallies: history.Tallies) -> None:
        """Merge a unit of work's tallies into the stored buckets: one query for the batch's rows
        (its zones at its bucket starts: a superset, matched here), one insert, one update."""
        if not tallies:
            return
        existing: dict[tuple[str, datetime.datetime], Any] = {
            (row.zone_id, as_utc(row.start)): row
            for row in self.session.execute(
                sa.select(store.buckets).where(
                    store.buckets.c.zone_id.in_(sorted({zone_id for zone_id, _ in tallies})),
                    store.buckets.c.start.in_(sorted({start for _, start in tallies})),
                )
            ).all()
        }
        inserts, updates = [], []
        for (zone_id, start), tally in tallies.items():
            old = existing.get((zone_id, start))
            values = _bucket_values(tally, old)
            if old is None:
                inserts.append({"zone_id": zone_id, "start": start, **values})
            else:
                updates.append({"z": zone_id, "s": start, **values})
        if inserts:
            self.session.execute(store.buckets.insert(), inserts)
        if updates:
            self.session.execute(
                store.buckets.update()
                .where(store.buckets.c.zone_id == sa.bindparam("z"), store.buckets.c.start == sa.bindparam("s"))
                .values({column: sa.bindparam(column) for column in _BUCKET_COLUMNS}),
                updates,
            )


# ------------------------------------------------------------------------------------------------
# Rows to domain objects and back

_BUCKET_COLUMNS = ("max_occupancy", "max_at", "last_occupancy", "sum_occupancy", "samples")


def _duration_us(delta: datetime.timedelta) -> int:
    return delta // datetime.timedelta(microseconds=1)


def config_from_row(row: Any) -> ZoneConfig:
    return zones.build_zone(
        row.zone_id,
        row.name_zh,
        row.name_en,
        int(row.capacity),
        levels=[
            zones.LevelRule(Level[name], int(threshold), tuple(Measure[m] for m in measures))
            for name, threshold, measures in json.loads(row.levels)
        ],
        hysteresis_bp=int(row.hysteresis_bp),
        min_dwell=datetime.timedelta(microseconds=int(row.min_dwell_us)),
        silence_after=datetime.timedelta(microseconds=int(row.silence_after_us)),
        schedule=[
            zones.RawScheduleEntry(
                entry["name"],
                entry["start_time"],
                datetime.timedelta(seconds=entry["duration_s"]),
                tuple(entry["iso_weekdays"]),
                entry["valid_from"] or None,
                entry["valid_to"] or None,
            )
            for entry in json.loads(row.schedule)
        ],
    )


def record_from_row(row: Any) -> ZoneRecord:
    return ZoneRecord(config_from_row(row), as_utc(row.created_at), as_utc(row.updated_at))


def _config_values(config: ZoneConfig) -> dict[str, object]:
    return {
        "name_zh": config.name_zh,
        "name_en": config.name_en,
        "capacity": config.capacity,
        "levels": json.dumps(
            [[rule.level.name, rule.threshold_bp, [m.name for m in rule.measures]] for rule in config.levels]
        ),
        "hysteresis_bp": config.hysteresis_bp,
        "min_dwell_us": _duration_us(config.min_dwell),
        "silence_after_us": _duration_us(config.silence_after),
        "schedule": json.dumps(
            [
                {
                    "name": entry.name,
                    "start_time": zones.format_local_time(entry.start_time),
                    "duration_s": entry.duration.total_seconds(),
                    "iso_weekdays": sorted(entry.iso_weekdays),
                    "valid_from": entry.valid_from.isoformat() if entry.valid_from else "",
                    "valid_to": entry.valid_to.isoformat() if entry.valid_to else "",
                }
                for entry in config.schedule
            ],
            ensure_ascii=False,
        ),
    }


def _new_live(zone_id: str, now: datetime.datetime) -> dict[str, object]:
    return {
        "zone_id": zone_id,
        "occupancy": 0,
        "gate_total": 0,
        "level": Level.NONE.name,
        "level_since": now,
        "watermark": None,
        "watermark_wall": None,
        "updated_at": now,
        "review_at": None,
        "version": 1,
        "readings_applied": 0,
    }


def _zone_from_row(
    row: Any, config: ZoneConfig, sensors: dict[str, SensorState], wall_now: datetime.datetime
) -> ZoneState:
    # The watermark and its wall time are set together (a zone's first reading sets both).
    clock = (None, None) if row.watermark is None else (as_utc(row.watermark), as_utc(row.watermark_wall))
    live = ZoneLive(sensors=sensors, watermark=clock[0], watermark_wall=clock[1], occupancy=int(row.occupancy))
    # The estimate now: silent sensors' estimates have aged since it was stored.
    occupancy.recompute(config, live, wall_now)
    return ZoneState(
        config=config,
        live=live,
        level=LevelState(Level[row.level], as_utc(row.level_since)),
        version=int(row.version),
        readings_applied=int(row.readings_applied),
        stored_sensors=set(sensors),
        stored_occupancy=int(row.occupancy),
        updated_at=as_utc(row.updated_at),
    )


def _live_values(zone: ZoneState, wall_now: datetime.datetime) -> dict[str, object]:
    return {
        "z": zone.config.zone_id,
        "occupancy": zone.live.occupancy,
        "gate_total": zone.live.gate_total,
        "level": zone.level.level.name,
        "level_since": zone.level.since,
        "watermark": zone.live.watermark,
        "watermark_wall": zone.live.watermark_wall,
        # The contract's "when the last reading was applied": a timer pass is not one.
        "updated_at": wall_now if zone.applied else zone.updated_at,
        "review_at": zone.review_at(wall_now),
        "version": zone.version + 1,
        "readings_applied": zone.readings_applied + zone.applied,
    }


def _sensor_json(state: SensorState) -> str:
    return json.dumps(
        {
            "seq": state.last_sequence,
            "observed": state.last_observed_at.isoformat(),
            "value": state.value,
            "missing": occupancy.missing_to_json(state.missing),
            "floor": state.floor_sequence,
            "silent": state.silent,
            "silent_since": state.silent_since.isoformat() if state.silent_since else None,
        },
        separators=(",", ":"),
    )


def _sensor_from_row(row: Any) -> SensorState:
    data = json.loads(row.state)
    return SensorState(
        sensor_id=row.sensor_id,
        kind=SensorKind(row.kind),
        last_sequence=data["seq"],
        last_observed_at=datetime.datetime.fromisoformat(data["observed"]),
        value=data["value"],
        missing=occupancy.missing_from_json(data["missing"]),
        floor_sequence=data["floor"],
        silent=data["silent"],
        silent_since=datetime.datetime.fromisoformat(data["silent_since"]) if data["silent_since"] else None,
    )


def _level_change_values(change: LevelChanged) -> dict[str, object]:
    return {
        "zone_id": change.zone_id,
        "at": change.at,
        "previous_level": change.previous.name,
        "level": change.level.name,
        "occupancy": change.occupancy,
        "load_bp": change.load_bp,
        "triggered_by_observed_at": change.triggered_by_observed_at,
        "decided_at": change.decided_at,
    }


def _bucket_values(tally: history.BucketTally, old: Any | None) -> dict[str, object]:
    """A stored bucket with a unit of work's tally merged in (the stored maximum wins a tie)."""
    max_occupancy, max_at = tally.max_occupancy, tally.max_at
    if old is not None and int(old.max_occupancy) >= max_occupancy:
        max_occupancy, max_at = int(old.max_occupancy), as_utc(old.max_at)
    return {
        "max_occupancy": max_occupancy,
        "max_at": max_at,
        "last_occupancy": tally.last_occupancy,
        "sum_occupancy": tally.sum_occupancy + (int(old.sum_occupancy) if old is not None else 0),
        "samples": tally.samples + (int(old.samples) if old is not None else 0),
    }
