"""Crowd's use cases, shared by the api process (gRPC) and the ingest and worker processes:
zones, readings in batches, the timers, status, history and forecast.

The pure rules live in zones.py (configuration), occupancy.py (readings, sensors, the fused
estimate, silence), levels.py (the response level with hysteresis and dwell), history.py and
forecast.py; this module loads and stores their state and turns their decisions into events.

Decisions a reader should know:

* One transaction per batch. A batch of readings (a ReportReadings message, or up to a few
  hundred messages of the broker's stream) is applied in one transaction: every zone it touches
  is locked in zone id order (so two batches never deadlock), its sensors are loaded, every
  reading is applied in arrival order, and the level is decided after each applied reading, so
  thresholds are met at the reading that crosses them, not at the end of the batch. Live state,
  sensors, level changes, occupancy buckets and the events are written together: a batch is
  applied completely or not at all, and a redelivered batch finds its readings already seen
  (same sensor and sequence) and changes nothing.
* Time: a zone is decided by its own clock, event time with a wall-clock fallback
  (occupancy.zone_now), so a replayed year is decided by the readings' times. Level changes and
  buckets are stamped with the zone clock; the LevelChanged event also carries the wall time of
  the decision, so reading-to-decision latency is visible live.
* A blind zone (every sensor aged out) holds its level: no evidence is no reason to lift
  barriers. Its status shows no healthy sensor, and each silence was announced (sensor_silent).
* The timer looks only at zones whose `review_at` is due: a sensor's silence, an estimate ageing
  out, or a held down-move whose dwell ends, each converted from the zone clock to wall time.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

import sqlalchemy as sa
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy.orm import Session

from govmesh import clock as govmesh_clock
from govmesh.clock import as_utc, timestamp
from govmesh.crowd.v1 import crowd_pb2 as pb
from govmesh.crowd.v1 import events_pb2
from govmesh.db import Database
from govmesh.enums import from_proto
from govmesh.errors import InvalidArgument, NotFound
from govmesh.outbox import Outbox
from govmesh.paging import decode_key_token, encode_key_token, page_size
from govmesh.workdays import is_working_day
from services.crowd import store
from services.crowd.domain import forecast as forecasting
from services.crowd.domain import history, levels, occupancy, zones
from services.crowd.domain.levels import LevelState
from services.crowd.domain.occupancy import Outcome, Reading, RejectedReading, SensorState, ZoneLive
from services.crowd.domain.zones import Level, Measure, SensorKind, ZoneConfig

log = logging.getLogger(__name__)

#: Refusals detailed in a ReportReadings response (every one is counted).
MAX_REJECTIONS_DETAILED: Final = 1000
#: While a silent sensor's estimate ages out, the timer re-fuses the zone this often.
AGEING_STEP: Final = datetime.timedelta(seconds=10)
#: How often the worker's outbox relay looks for new events when idle: level_changed is what starts
#: barriers and metro skips, so it leaves within 20 ms of its commit (an indexed look at the outbox
#: 50 times a second is cheap next to that).
EVENT_RELAY_INTERVAL: Final = 0.02
#: The zones one timer pass looks at.
TIMER_BATCH: Final = 200


# ------------------------------------------------------------------------------------------------
# Enum mappings: the domain enums' names are the contract's without the prefix.


def level_pb(level: Level) -> pb.ResponseLevel.ValueType:
    return pb.ResponseLevel.Value(f"RESPONSE_LEVEL_{level.name}")


def measure_pb(measure: Measure) -> pb.Measure.ValueType:
    return pb.Measure.Value(f"MEASURE_{measure.name}")


def kind_pb(kind: SensorKind) -> pb.SensorKind.ValueType:
    return pb.SensorKind.Value(f"SENSOR_KIND_{kind.name}")


def reading_from_pb(message: pb.SensorReading) -> Reading | RejectedReading:
    """The contract's reading as the domain reads it: unset fields are None, and occupancy's
    validation names them. A time no calendar holds is refused here, naming observed_at."""
    value = message.WhichOneof("value")
    observed_at = None
    if message.HasField("observed_at"):
        try:
            observed_at = message.observed_at.ToDatetime(datetime.UTC)
        except (ValueError, OverflowError):
            return RejectedReading(
                occupancy.Rejection.ABSURD_VALUE,
                f"observed_at ({message.observed_at.seconds} s, {message.observed_at.nanos} ns) is not a time",
            )
    return Reading(
        zone_id=message.zone_id,
        sensor_id=message.sensor_id,
        kind=from_proto(SensorKind, pb.SensorKind, "SENSOR_KIND_", message.sensor_kind),
        sequence=message.sequence,
        observed_at=observed_at,
        delta=message.delta if value == "delta" else None,
        absolute_count=message.absolute_count if value == "absolute_count" else None,
    )


def rejection_pb(reason: occupancy.Rejection) -> pb.ReadingRejectionReason.ValueType:
    return pb.ReadingRejectionReason.Value(f"READING_REJECTION_REASON_{reason.name}")


# ------------------------------------------------------------------------------------------------
# Zones as stored


#: Times a request may name (history windows): the system's data lies well inside them.
EARLIEST_TIME: Final = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
LATEST_TIME: Final = datetime.datetime(2100, 1, 1, tzinfo=datetime.UTC)


def timedelta_of(duration: Duration, field: str) -> datetime.timedelta:
    """A request's Duration, or INVALID_ARGUMENT naming the field when no timedelta can hold it."""
    try:
        return duration.ToTimedelta()
    except (ValueError, OverflowError):
        raise InvalidArgument(field, "OUT_OF_RANGE", f"{duration.seconds} s is not a usable duration") from None


def datetime_of(stamp: Timestamp, field: str) -> datetime.datetime:
    """A request's Timestamp, or INVALID_ARGUMENT naming the field outside 2000-2100."""
    try:
        moment = stamp.ToDatetime(datetime.UTC)
    except (ValueError, OverflowError):
        moment = None
    if moment is None or not EARLIEST_TIME <= moment <= LATEST_TIME:
        raise InvalidArgument(field, "OUT_OF_RANGE", "must be a time between 2000 and 2100")
    return moment


def _duration_us(delta: datetime.timedelta) -> int:
    return delta // datetime.timedelta(microseconds=1)


def _config_from_row(row: Any) -> ZoneConfig:
    levels_data = json.loads(row.levels)
    schedule_data = json.loads(row.schedule)
    return zones.build_zone(
        row.zone_id,
        row.name_zh,
        row.name_en,
        int(row.capacity),
        levels=[
            zones.LevelRule(Level[name], int(threshold), tuple(Measure[m] for m in measures))
            for name, threshold, measures in levels_data
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
            for entry in schedule_data
        ],
    )


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


def _duration_pb(delta: datetime.timedelta) -> Duration:
    duration = Duration()
    duration.FromTimedelta(delta)
    return duration


def _zone_pb(config: ZoneConfig, created_at: datetime.datetime, updated_at: datetime.datetime) -> pb.Zone:
    return pb.Zone(
        zone_id=config.zone_id,
        name_zh=config.name_zh,
        name_en=config.name_en,
        capacity=config.capacity,
        levels=[
            pb.ZoneLevel(
                level=level_pb(rule.level),
                threshold_bp=rule.threshold_bp,
                measures=[measure_pb(m) for m in rule.measures],
            )
            for rule in config.levels
        ],
        hysteresis_bp=config.hysteresis_bp,
        min_dwell=_duration_pb(config.min_dwell),
        silence_after=_duration_pb(config.silence_after),
        schedule=[
            pb.ScheduleEntry(
                name=entry.name,
                start_time=zones.format_local_time(entry.start_time),
                duration=_duration_pb(entry.duration),
                iso_weekdays=sorted(entry.iso_weekdays),
                valid_from=entry.valid_from.isoformat() if entry.valid_from else "",
                valid_to=entry.valid_to.isoformat() if entry.valid_to else "",
            )
            for entry in config.schedule
        ],
        created_at=timestamp(created_at),
        updated_at=timestamp(updated_at),
    )


def config_from_pb(zone: pb.Zone) -> ZoneConfig:
    """The contract's zone, validated; every problem is reported at once, each naming its field."""
    try:
        return zones.build_zone(
            zone.zone_id,
            zone.name_zh,
            zone.name_en,
            zone.capacity,
            levels=[
                (
                    from_proto(Level, pb.ResponseLevel, "RESPONSE_LEVEL_", rule.level),
                    rule.threshold_bp,
                    tuple(from_proto(Measure, pb.Measure, "MEASURE_", m) for m in rule.measures),
                )
                for rule in zone.levels
            ],
            hysteresis_bp=zone.hysteresis_bp,
            min_dwell=timedelta_of(zone.min_dwell, "zone.min_dwell"),
            silence_after=timedelta_of(zone.silence_after, "zone.silence_after"),
            schedule=[
                zones.RawScheduleEntry(
                    entry.name,
                    entry.start_time,
                    timedelta_of(entry.duration, f"zone.schedule[{index}].duration"),
                    tuple(entry.iso_weekdays),
                    entry.valid_from or None,
                    entry.valid_to or None,
                )
                for index, entry in enumerate(zone.schedule)
            ],
        )
    except zones.ZoneProblem as problem:
        first = problem.problems[0]
        detail = "; ".join(f"{p.field}: {p.reason}" for p in problem.problems)
        raise InvalidArgument(first.field, "INVALID_ZONE", detail.removeprefix(f"{first.field}: ")) from None


# ------------------------------------------------------------------------------------------------
# Sensors and live state as stored


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


def _opt(moment: datetime.datetime | None) -> datetime.datetime | None:
    return None if moment is None else as_utc(moment)


@dataclasses.dataclass
class _Zone:
    """One zone loaded for a unit of work: its configuration, live state and level."""

    config: ZoneConfig
    live: ZoneLive
    level: LevelState
    version: int
    readings_applied: int
    # The occupancy as stored (the estimate may have aged since), and when a reading was last applied.
    stored_occupancy: int = 0
    updated_at: datetime.datetime | None = None
    # Sensors that have a row already (the others are inserted when stored).
    stored_sensors: set[str] = dataclasses.field(default_factory=set)
    dirty_sensors: set[str] = dataclasses.field(default_factory=set)
    changed: bool = False
    # When a held down-move may happen (levels.LevelDecision.held_until): until then, a reading
    # that leaves the occupancy as it was cannot change the level.
    held_until: datetime.datetime | None = None


@dataclasses.dataclass
class _Bucket:
    start: datetime.datetime
    max_occupancy: int
    max_at: datetime.datetime
    last_occupancy: int
    sum_occupancy: int
    samples: int


def _bucket_start(at: datetime.datetime) -> datetime.datetime:
    at = as_utc(at)
    epoch = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
    return epoch + ((at - epoch) // history.BUCKET) * history.BUCKET


@dataclasses.dataclass
class IngestReport:
    """What one batch did, reading by reading (outcomes[i] is the i-th reading's)."""

    outcomes: list[Outcome | RejectedReading]

    def count(self, outcome: Outcome) -> int:
        return sum(1 for o in self.outcomes if o is outcome)

    @property
    def rejected(self) -> list[tuple[int, RejectedReading]]:
        return [(i, o) for i, o in enumerate(self.outcomes) if isinstance(o, RejectedReading)]


class CrowdApp:
    def __init__(
        self,
        db: Database,
        clock: Callable[[], datetime.datetime] = govmesh_clock.now,
        on_events: Callable[[Sequence[Message]], None] = lambda events: None,
    ) -> None:
        self.db = db
        self.clock = clock
        # Told of every event after it committed (the metrics count them).
        self.on_events = on_events
        self.outbox = Outbox("crowd", store.outbox, store.inbox)
        self._config_cache: dict[str, tuple[int, ZoneConfig]] = {}

    # --------------------------------------------------------------------------------------------
    # Zones

    def upsert_zone(self, request: pb.UpsertZoneRequest) -> pb.UpsertZoneResponse:
        if not request.HasField("zone"):
            raise InvalidArgument("zone", "REQUIRED", "is required")
        config = config_from_pb(request.zone)
        try:
            return self._upsert(config)
        except sa.exc.IntegrityError:
            # Another call created the zone at the same moment: this one is now an update.
            return self._upsert(config)

    def _upsert(self, config: ZoneConfig) -> pb.UpsertZoneResponse:
        now = self.clock()
        values = _config_values(config)
        with self.db.transaction() as session:
            row = session.execute(
                sa.select(store.zones).where(store.zones.c.zone_id == config.zone_id).with_for_update()
            ).first()
            created = row is None
            if row is None:
                session.execute(
                    store.zones.insert().values(
                        zone_id=config.zone_id, version=1, created_at=now, updated_at=now, **values
                    )
                )
                session.execute(
                    store.live.insert().values(
                        zone_id=config.zone_id,
                        occupancy=0,
                        gate_total=0,
                        level=Level.NONE.name,
                        level_since=now,
                        watermark=None,
                        watermark_wall=None,
                        updated_at=now,
                        review_at=None,
                        version=1,
                        readings_applied=0,
                    )
                )
                created_at = now
            else:
                session.execute(
                    store.zones.update()
                    .where(store.zones.c.zone_id == config.zone_id)
                    .values(version=row.version + 1, updated_at=now, **values)
                )
                # New thresholds or capacity apply at once: the timer decides the level again.
                session.execute(
                    store.live.update()
                    .where(store.live.c.zone_id == config.zone_id)
                    .values(review_at=now, version=store.live.c.version + 1)
                )
                created_at = as_utc(row.created_at)
        return pb.UpsertZoneResponse(zone=_zone_pb(config, created_at, now), created=created)

    def list_zones(self, request: pb.ListZonesRequest) -> pb.ListZonesResponse:
        size = page_size(request.page_size, default=100, maximum=1000)
        query = sa.select(store.zones).order_by(store.zones.c.zone_id).limit(size + 1)
        if request.page_token:
            after = decode_key_token(request.page_token)
            if not zones.is_zone_id(after):
                raise InvalidArgument("page_token", "INVALID", "is not a token this service gave")
            query = query.where(store.zones.c.zone_id > after)
        with self.db.read() as session:
            rows = session.execute(query).all()
        page = rows[:size]
        return pb.ListZonesResponse(
            zones=[_zone_pb(_config_from_row(r), as_utc(r.created_at), as_utc(r.updated_at)) for r in page],
            next_page_token=encode_key_token(page[-1].zone_id) if len(rows) > size else "",
        )

    def _configs(self, session: Session, zone_ids: Iterable[str]) -> dict[str, ZoneConfig]:
        ids = _zone_ids(zone_ids)
        rows = session.execute(sa.select(store.zones).where(store.zones.c.zone_id.in_(ids))).all() if ids else []
        return {row.zone_id: self._config(row) for row in rows}

    def _config(self, row: Any) -> ZoneConfig:
        """The zone's configuration, validated once per version (ingestion reads it per batch)."""
        cached = self._config_cache.get(row.zone_id)
        if cached is None or cached[0] != row.version:
            cached = (int(row.version), _config_from_row(row))
            self._config_cache[row.zone_id] = cached
        return cached[1]

    def _require_config(self, session: Session, zone_id: str) -> ZoneConfig:
        if not zone_id:
            raise InvalidArgument("zone_id", "REQUIRED", "is required")
        config = self._configs(session, [zone_id]).get(zone_id) if zones.is_zone_id(zone_id) else None
        if config is None:
            raise NotFound(f"zone_id: no zone {_shown(zone_id)}", field="zone_id", reason="UNKNOWN_ZONE")
        return config

    # --------------------------------------------------------------------------------------------
    # Loading and storing a zone's live state

    def _lock_live(self, session: Session, zone_ids: Iterable[str]) -> None:
        """The live rows of these zones, locked in zone id order (no two transactions deadlock)."""
        ids = sorted(set(zone_ids))
        if ids:
            session.execute(
                sa.select(store.live.c.zone_id)
                .where(store.live.c.zone_id.in_(ids))
                .order_by(store.live.c.zone_id)
                .with_for_update()
            ).all()

    def _load(self, session: Session, configs: dict[str, ZoneConfig], wall_now: datetime.datetime) -> dict[str, _Zone]:
        """The zones' live state (writers lock the rows first, with _lock_live)."""
        ids = sorted(configs)
        if not ids:
            return {}
        live_rows = session.execute(
            sa.select(store.live).where(store.live.c.zone_id.in_(ids)).order_by(store.live.c.zone_id)
        ).all()
        sensors: dict[str, dict[str, SensorState]] = defaultdict(dict)
        for row in session.execute(sa.select(store.sensors).where(store.sensors.c.zone_id.in_(ids))).all():
            sensors[row.zone_id][row.sensor_id] = _sensor_from_row(row)
        loaded: dict[str, _Zone] = {}
        for row in live_rows:
            live = ZoneLive(
                sensors=sensors[row.zone_id],
                watermark=_opt(row.watermark),
                watermark_wall=_opt(row.watermark_wall),
                occupancy=int(row.occupancy),
            )
            # The estimate now: silent sensors' estimates have aged since it was stored.
            occupancy.recompute(configs[row.zone_id], live, wall_now)
            loaded[row.zone_id] = _Zone(
                config=configs[row.zone_id],
                live=live,
                level=LevelState(Level[row.level], as_utc(row.level_since)),
                version=int(row.version),
                readings_applied=int(row.readings_applied),
                stored_sensors=set(sensors[row.zone_id]),
                stored_occupancy=int(row.occupancy),
                updated_at=as_utc(row.updated_at),
            )
        return loaded

    def _review_at(self, zone: _Zone, wall_now: datetime.datetime) -> datetime.datetime | None:
        """When the timer must look at the zone again, as wall time (None: nothing pending)."""
        live, config = zone.live, zone.config
        now = occupancy.zone_now(live, wall_now)
        due: list[datetime.datetime] = []
        for state in live.sensors.values():
            if not state.silent:
                due.append(state.last_observed_at + config.silence_after)
            elif now < state.last_observed_at + 2 * config.silence_after:
                due.append(now + AGEING_STEP)  # its estimate is still ageing out
        held = levels.next_review(config, zone.level, levels.load_bp(live.occupancy, config.capacity))
        if held is not None and not live.blind:
            due.append(held)
        if not due:
            return None
        # Event time to wall time: the zone clock runs at the wall clock's pace from here.
        return wall_now + max(datetime.timedelta(0), min(due) - now)

    def _store(self, session: Session, stored: Sequence[tuple[_Zone, int]], wall_now: datetime.datetime) -> None:
        """Write back zones changed by one unit of work, each with the readings it applied: one
        statement per table for the whole batch (per-zone statements cost more than the readings)."""
        if not stored:
            return
        session.execute(
            store.live.update()
            .where(store.live.c.zone_id == sa.bindparam("z"))
            .values(
                {
                    column: sa.bindparam(column)
                    for column in (
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
                }
            ),
            [
                {
                    "z": zone.config.zone_id,
                    "occupancy": zone.live.occupancy,
                    "gate_total": zone.live.gate_total,
                    "level": zone.level.level.name,
                    "level_since": zone.level.since,
                    "watermark": zone.live.watermark,
                    "watermark_wall": zone.live.watermark_wall,
                    # The contract's "when the last reading was applied": a timer pass is not one.
                    "updated_at": wall_now if applied else zone.updated_at,
                    "review_at": self._review_at(zone, wall_now),
                    "version": zone.version + 1,
                    "readings_applied": zone.readings_applied + applied,
                }
                for zone, applied in stored
            ],
        )
        inserts: list[dict[str, object]] = []
        updates: list[dict[str, object]] = []
        for zone, _ in stored:
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
            session.execute(store.sensors.insert(), inserts)
        if updates:
            session.execute(
                store.sensors.update()
                .where(store.sensors.c.zone_id == sa.bindparam("z"), store.sensors.c.sensor_id == sa.bindparam("s"))
                .values(state=sa.bindparam("state")),
                updates,
            )

    def _decide(
        self,
        zone: _Zone,
        wall_now: datetime.datetime,
        observed_at: datetime.datetime | None,
        changes: list[dict[str, object]],
        events: list[tuple[Message, str]],
    ) -> None:
        """Decide the zone's level at its clock's now; a change is recorded and announced. A blind
        zone (no fresh evidence) never goes down, and goes up on the highest count its sensors last
        gave: safety first both ways."""
        config, live = zone.config, zone.live
        at = occupancy.zone_now(live, wall_now)
        if at < zone.level.since:
            if zone.level.level is not Level.NONE:
                return  # the zone clock never goes back past a change it made
            # A zone fed readings from before it was configured (a replay, a backfill) had no
            # level then either: it has been at NONE since its first reading.
            zone.level = LevelState(Level.NONE, at)
        if live.blind:
            load = levels.load_bp(occupancy.highest_last_count(live), config.capacity)
            rising = levels.level_for_load(config, load)
            if rising <= zone.level.level:
                return
            decision = levels.LevelDecision(LevelState(rising, at), zone.level)
        else:
            load = levels.load_bp(live.occupancy, config.capacity)
            decision = levels.decide(config, zone.level, load, at)
        zone.held_until = decision.held_until
        if not decision.changed:
            return
        previous = zone.level.level
        zone.level = decision.state
        change = levels.measures_change(config, previous, decision.state.level)
        changes.append(
            {
                "zone_id": config.zone_id,
                "at": at,
                "previous_level": previous.name,
                "level": decision.state.level.name,
                "occupancy": live.occupancy,
                "load_bp": load,
                "triggered_by_observed_at": observed_at,
                "decided_at": wall_now,
            }
        )
        event = events_pb2.LevelChanged(
            zone_id=config.zone_id,
            zone_name_zh=config.name_zh,
            previous_level=level_pb(previous),
            level=level_pb(decision.state.level),
            occupancy=live.occupancy,
            capacity=config.capacity,
            load_bp=load,
            measures_to_take=[measure_pb(m) for m in change.to_take],
            measures_to_lift=[measure_pb(m) for m in change.to_lift],
            changed_at=timestamp(wall_now),
        )
        if observed_at is not None:
            event.triggered_by_observed_at.CopyFrom(timestamp(observed_at))
        events.append((event, config.zone_id))

    def _silences(self, zone: _Zone, wall_now: datetime.datetime, events: list[tuple[Message, str]]) -> bool:
        found = occupancy.detect_silence(zone.config, zone.live, wall_now)
        for silence in found:
            zone.dirty_sensors.add(silence.sensor_id)
            events.append((_silent_pb(silence), silence.zone_id))
        if found:
            occupancy.recompute(zone.config, zone.live, wall_now)
        return bool(found)

    # --------------------------------------------------------------------------------------------
    # Readings

    def ingest(
        self, readings: Sequence[Reading | RejectedReading], wall_now: datetime.datetime | None = None
    ) -> IngestReport:
        """Apply a batch of readings in one transaction (module docstring). A reading its transport
        could not read arrives as its refusal and keeps its place in the outcomes."""
        now = self.clock() if wall_now is None else wall_now
        outcomes: list[Outcome | RejectedReading] = []
        events: list[tuple[Message, str]] = []
        zone_ids = {r.zone_id for r in readings if isinstance(r, Reading) and zones.is_zone_id(r.zone_id)}
        with self.db.transaction() as session:
            # Locked before the configurations are read, so an UpsertZone that commits meanwhile
            # is seen whole (its new thresholds decide these readings).
            self._lock_live(session, zone_ids)
            loaded = self._load(session, self._configs(session, zone_ids), now)
            changes: list[dict[str, object]] = []
            buckets: dict[tuple[str, datetime.datetime], _Bucket] = {}
            applied: dict[str, int] = defaultdict(int)
            next_silence: dict[str, datetime.datetime] = {z: _next_silence(zone) for z, zone in loaded.items()}
            for reading in readings:
                if isinstance(reading, RejectedReading):
                    outcomes.append(reading)
                    continue
                zone = loaded.get(reading.zone_id)
                if zone is None:
                    outcomes.append(occupancy.unknown_zone(reading.zone_id))
                    continue
                result = occupancy.apply(zone.config, zone.live, reading, now)
                if result.rejection is not None:
                    outcomes.append(result.rejection)
                    continue
                assert result.outcome is not None
                outcomes.append(result.outcome)
                if not result.applied:
                    continue
                zone.changed = True
                zone.dirty_sensors.add(reading.sensor_id)
                applied[reading.zone_id] += 1
                zone_now = occupancy.zone_now(zone.live, now)
                silenced = False
                if zone_now > next_silence[reading.zone_id]:
                    silenced = self._silences(zone, now, events)
                    next_silence[reading.zone_id] = _next_silence(zone)
                held = zone.held_until is not None and zone_now >= zone.held_until
                # A blind zone's estimate stays 0 while its last counts rise: it is decided anyway.
                if result.occupancy_changed or silenced or held or zone.live.blind:
                    self._decide(zone, now, reading.observed_at, changes, events)
                _sample(buckets, reading.zone_id, zone_now, zone.live.occupancy)
            self._store(session, [(zone, applied[z]) for z, zone in loaded.items() if zone.changed], now)
            if changes:
                session.execute(store.level_changes.insert(), changes)
            self._store_buckets(session, buckets)
            if events:
                self.outbox.add_many(session, events)
        if events:
            self.on_events([event for event, _ in events])
        return IngestReport(outcomes=outcomes)

    def _store_buckets(self, session: Session, buckets: dict[tuple[str, datetime.datetime], _Bucket]) -> None:
        if not buckets:
            return
        # One query for the batch: its zones' rows at its bucket starts (a superset, matched below).
        zone_ids = sorted({zone_id for zone_id, _ in buckets})
        starts = sorted({start for _, start in buckets})
        existing: dict[tuple[str, datetime.datetime], Any] = {
            (row.zone_id, as_utc(row.start)): row
            for row in session.execute(
                sa.select(store.buckets).where(store.buckets.c.zone_id.in_(zone_ids), store.buckets.c.start.in_(starts))
            ).all()
        }
        inserts, updates = [], []
        for (zone_id, start), bucket in buckets.items():
            old = existing.get((zone_id, start))
            if old is not None and int(old.max_occupancy) >= bucket.max_occupancy:
                bucket.max_occupancy, bucket.max_at = int(old.max_occupancy), as_utc(old.max_at)
            values = {
                "max_occupancy": bucket.max_occupancy,
                "max_at": bucket.max_at,
                "last_occupancy": bucket.last_occupancy,
                "sum_occupancy": bucket.sum_occupancy + (int(old.sum_occupancy) if old is not None else 0),
                "samples": bucket.samples + (int(old.samples) if old is not None else 0),
            }
            if old is None:
                inserts.append({"zone_id": zone_id, "start": start, **values})
            else:
                updates.append({"z": zone_id, "s": start, **values})
        if inserts:
            session.execute(store.buckets.insert(), inserts)
        if updates:
            session.execute(
                store.buckets.update()
                .where(store.buckets.c.zone_id == sa.bindparam("z"), store.buckets.c.start == sa.bindparam("s"))
                .values(
                    max_occupancy=sa.bindparam("max_occupancy"),
                    max_at=sa.bindparam("max_at"),
                    last_occupancy=sa.bindparam("last_occupancy"),
                    sum_occupancy=sa.bindparam("sum_occupancy"),
                    samples=sa.bindparam("samples"),
                ),
                updates,
            )

    # --------------------------------------------------------------------------------------------
    # Timers

    def run_timers(self, wall_now: datetime.datetime | None = None) -> int:
        """Silences, ageing estimates and held down-moves due by now, zone by zone under its lock.
        Returns the events queued."""
        now = self.clock() if wall_now is None else wall_now
        with self.db.read() as session:
            due = list(
                session.execute(
                    sa.select(store.live.c.zone_id)
                    .where(store.live.c.review_at <= now)
                    .order_by(store.live.c.review_at)
                    .limit(TIMER_BATCH)
                ).scalars()
            )
        queued = 0
        for zone_id in due:
            try:
                queued += self._run_zone_timer(zone_id, self.clock() if wall_now is None else wall_now)
            except sa.exc.OperationalError:
                raise  # the database is away: the whole pass waits for it
            except Exception:
                # One zone that cannot be decided must not starve the others: logged with its
                # trace, and the next pass tries it again.
                log.exception("zone timer failed", extra={"zone": zone_id})
        return queued

    def _run_zone_timer(self, zone_id: str, now: datetime.datetime) -> int:
        events: list[tuple[Message, str]] = []
        with self.db.transaction() as session:
            self._lock_live(session, [zone_id])
            zone = self._load(session, self._configs(session, [zone_id]), now).get(zone_id)
            if zone is None:
                return 0
            for silence in occupancy.tick(zone.config, zone.live, now).silences:
                zone.dirty_sensors.add(silence.sensor_id)
                events.append((_silent_pb(silence), zone_id))
            changes: list[dict[str, object]] = []
            self._decide(zone, now, None, changes, events)
            self._store(session, [(zone, 0)], now)
            if changes:
                session.execute(store.level_changes.insert(), changes)
            if zone.live.occupancy != zone.stored_occupancy:
                # The estimate aged (a silent sensor's weight fell): history records it too.
                buckets: dict[tuple[str, datetime.datetime], _Bucket] = {}
                _sample(buckets, zone_id, occupancy.zone_now(zone.live, now), zone.live.occupancy)
                self._store_buckets(session, buckets)
            if events:
                self.outbox.add_many(session, events)
        if events:
            self.on_events([event for event, _ in events])
        return len(events)

    # --------------------------------------------------------------------------------------------
    # Status, history, forecast

    def statuses(self, zone_ids: Sequence[str] | None = None) -> dict[str, tuple[int, pb.ZoneStatus]]:
        """(version, status) of the zones asked for (every zone when None); unknown ids are left out."""
        with self.db.read() as session:
            query = sa.select(store.zones)
            if zone_ids is not None:
                query = query.where(store.zones.c.zone_id.in_(_zone_ids(zone_ids)))
            configs = {row.zone_id: self._config(row) for row in session.execute(query).all()}
            loaded = self._load(session, configs, self.clock())
        return {
            zone_id: (zone.version, _status_pb(zone, zone.updated_at if zone.readings_applied else None))
            for zone_id, zone in loaded.items()
        }

    def versions(self, zone_ids: Sequence[str] | None = None) -> dict[str, int]:
        """Each zone's version, cheaply: what WatchZones polls."""
        query = sa.select(store.live.c.zone_id, store.live.c.version)
        if zone_ids is not None:
            query = query.where(store.live.c.zone_id.in_(_zone_ids(zone_ids)))
        with self.db.read() as session:
            return {row.zone_id: int(row.version) for row in session.execute(query).all()}

    def get_zone_status(self, request: pb.GetZoneStatusRequest) -> pb.GetZoneStatusResponse:
        if not request.zone_id:
            raise InvalidArgument("zone_id", "REQUIRED", "is required")
        found = self.statuses([request.zone_id]).get(request.zone_id)
        if found is None:
            raise NotFound(f"zone_id: no zone {_shown(request.zone_id)}", field="zone_id", reason="UNKNOWN_ZONE")
        return pb.GetZoneStatusResponse(status=found[1])

    def get_zone_history(self, request: pb.GetZoneHistoryRequest) -> pb.GetZoneHistoryResponse:
        for name in ("start_time", "end_time"):
            if not request.HasField(name):
                raise InvalidArgument(name, "REQUIRED", "is required")
        try:
            start, end = history.check_window(
                datetime_of(request.start_time, "start_time"), datetime_of(request.end_time, "end_time")
            )
        except ValueError as exc:
            field = "end_time" if "end_time" in str(exc) else "start_time"
            raise InvalidArgument(field, "INVALID_WINDOW", str(exc).removeprefix(f"{field}: ")) from None
        with self.db.read() as session:
            config = self._require_config(session, request.zone_id)
            changes_table = store.level_changes
            before = session.execute(
                sa.select(changes_table.c.level)
                .where(changes_table.c.zone_id == config.zone_id, changes_table.c.at < start)
                .order_by(changes_table.c.at.desc(), changes_table.c.change_id.desc())
                .limit(1)
            ).scalar()
            changes = [
                history.LevelChange(as_utc(r.at), Level[r.previous_level], Level[r.level], int(r.occupancy))
                for r in session.execute(
                    sa.select(changes_table)
                    .where(changes_table.c.zone_id == config.zone_id, changes_table.c.at >= start)
                    .where(changes_table.c.at < end)
                    .order_by(changes_table.c.at, changes_table.c.change_id)
                ).all()
            ]
            buckets = self._buckets(session, config.zone_id, start - history.BUCKET, end)
        summary = history.summarise(config, changes, Level[before] if before else Level.NONE, buckets, start, end)
        return pb.GetZoneHistoryResponse(
            zone_id=summary.zone_id,
            start_time=timestamp(summary.start),
            end_time=timestamp(summary.end),
            time_at_level=_durations_pb(summary.time_at_level),
            peak=_peak_pb(summary.peak),
            level_changes=summary.level_changes,
            barrier_days=list(summary.barrier_days),
            barrier_day_count=summary.barrier_day_count,
            days=[
                pb.ZoneDay(
                    date=day.date.isoformat(),
                    peak=_peak_pb(day.peak),
                    max_level=level_pb(day.max_level),
                    time_at_level=_durations_pb(day.time_at_level),
                    barriers_up=day.barriers_up,
                    level_changes=day.level_changes,
                )
                for day in summary.days
            ],
        )

    def _buckets(
        self, session: Session, zone_id: str, start: datetime.datetime, end: datetime.datetime
    ) -> list[history.OccupancyBucket]:
        return [
            history.OccupancyBucket(
                start=as_utc(r.start),
                max_occupancy=int(r.max_occupancy),
                max_at=as_utc(r.max_at),
                last_occupancy=int(r.last_occupancy),
                mean_occupancy=int(r.sum_occupancy) // max(1, int(r.samples)),
            )
            for r in session.execute(
                sa.select(store.buckets)
                .where(store.buckets.c.zone_id == zone_id, store.buckets.c.start >= start, store.buckets.c.start < end)
                .order_by(store.buckets.c.start)
            ).all()
        ]

    def forecast(self, request: pb.ForecastRequest) -> pb.ForecastResponse:
        step = request.step_minutes or min(forecasting.DEFAULT_STEP_MINUTES, max(1, request.horizon_minutes))
        wall_now = self.clock()
        with self.db.read() as session:
            config = self._require_config(session, request.zone_id)
            zone = self._load(session, {config.zone_id: config}, wall_now)[config.zone_id]
            now = occupancy.zone_now(zone.live, wall_now)
            buckets = self._buckets(
                session, config.zone_id, now - datetime.timedelta(days=forecasting.LOOKBACK_DAYS + 2), now
            )
        try:
            result = forecasting.forecast(
                config,
                now,
                zone.live.occupancy,
                zone.level.level,
                buckets,
                request.horizon_minutes,
                step,
                is_holiday=lambda day: not is_working_day(day),
            )
        except ValueError as exc:
            message = str(exc)
            field = "step_minutes" if message.startswith("step_minutes") else "horizon_minutes"
            raise InvalidArgument(field, "OUT_OF_RANGE", message.removeprefix(f"{field}: ")) from None
        return pb.ForecastResponse(
            zone_id=config.zone_id,
            generated_at=timestamp(result.generated_at),
            points=[_point_pb(p) for p in result.points],
            peak=_point_pb(result.peak) if result.peak else None,
            max_expected_level=level_pb(result.max_expected_level),
            measures_to_prepare=[measure_pb(m) for m in result.measures_to_prepare],
        )


# ------------------------------------------------------------------------------------------------
# Helpers


def _next_silence(zone: _Zone) -> datetime.datetime:
    """The earliest zone time at which a healthy sensor of the zone could be found silent."""
    deadlines = [s.last_observed_at + zone.config.silence_after for s in zone.live.sensors.values() if not s.silent]
    return min(deadlines) if deadlines else datetime.datetime.max.replace(tzinfo=datetime.UTC)


def _sample(
    buckets: dict[tuple[str, datetime.datetime], _Bucket], zone_id: str, at: datetime.datetime, value: int
) -> None:
    start = _bucket_start(at)
    bucket = buckets.get((zone_id, start))
    if bucket is None:
        buckets[(zone_id, start)] = _Bucket(start, value, at, value, value, 1)
        return
    if value > bucket.max_occupancy:
        bucket.max_occupancy, bucket.max_at = value, at
    bucket.last_occupancy = value
    bucket.sum_occupancy += value
    bucket.samples += 1


def _silent_pb(silence: occupancy.SilenceEvent) -> events_pb2.SensorSilent:
    return events_pb2.SensorSilent(
        zone_id=silence.zone_id,
        sensor_id=silence.sensor_id,
        sensor_kind=kind_pb(silence.kind),
        last_sequence=silence.last_sequence,
        last_observed_at=timestamp(silence.last_observed_at),
        silence_after=_duration_pb(silence.silence_after),
        detected_at=timestamp(silence.detected_at),
        sensors_healthy=silence.sensors_healthy,
        sensors_total=silence.sensors_total,
    )


def _status_pb(zone: _Zone, updated_at: datetime.datetime | None) -> pb.ZoneStatus:
    config, live = zone.config, zone.live
    status = pb.ZoneStatus(
        zone_id=config.zone_id,
        name_zh=config.name_zh,
        capacity=config.capacity,
        occupancy=live.occupancy,
        load_bp=levels.load_bp(live.occupancy, config.capacity),
        level=level_pb(zone.level.level),
        level_since=timestamp(zone.level.since),
        active_measures=[measure_pb(m) for m in zones.measures_in_force(config, zone.level.level)],
        sensors_total=occupancy.sensors_total(live),
        sensors_healthy=occupancy.sensors_healthy(live),
        sensors=[
            pb.SensorStatus(
                sensor_id=s.sensor_id,
                sensor_kind=kind_pb(s.kind),
                state=pb.SENSOR_STATE_SILENT if s.silent else pb.SENSOR_STATE_HEALTHY,
                last_sequence=s.last_sequence,
                last_observed_at=timestamp(s.last_observed_at),
            )
            for s in sorted(live.sensors.values(), key=lambda s: s.sensor_id)
        ],
    )
    if updated_at is not None:
        status.updated_at.CopyFrom(timestamp(updated_at))
    return status


def _durations_pb(durations: Sequence[history.LevelDuration]) -> list[pb.LevelDuration]:
    return [pb.LevelDuration(level=level_pb(d.level), duration=_duration_pb(d.duration)) for d in durations]


def _peak_pb(peak: history.Peak | None) -> pb.Peak | None:
    if peak is None:
        return None
    return pb.Peak(occupancy=peak.occupancy, load_bp=peak.load_bp, level=level_pb(peak.level), at=timestamp(peak.at))


def _point_pb(point: forecasting.ForecastPoint) -> pb.ForecastPoint:
    return pb.ForecastPoint(
        at=timestamp(point.at),
        expected_occupancy=point.expected_occupancy,
        low_occupancy=point.low_occupancy,
        high_occupancy=point.high_occupancy,
        expected_load_bp=point.expected_load_bp,
        expected_level=level_pb(point.expected_level),
        scheduled_event=point.scheduled_event,
    )


def _shown(value: str) -> str:
    """An id as an error message quotes it: a caller's megabyte of text is not echoed back."""
    return repr(value if len(value) <= 64 else value[:64] + "...")


def _zone_ids(values: Iterable[str]) -> list[str]:
    """The ids that can name a zone, sorted, once each: anything else is looked up nowhere."""
    return sorted({value for value in values if zones.is_zone_id(value)})
