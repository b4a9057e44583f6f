"""Crowd's contract (govmesh.crowd.v1) to domain values and back: a request's values in, responses
and events out. Values only, never a session or a query. The domain enums' names are the
contract's without their prefix (govmesh.enums maps them both ways); a value the contract cannot
carry (a field a request left out, a time no calendar holds) is INVALID_ARGUMENT naming the field."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Final

from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from govmesh.clock import timestamp
from govmesh.crowd.v1 import crowd_pb2 as pb
from govmesh.crowd.v1 import events_pb2
from govmesh.enums import from_proto, to_proto
from govmesh.errors import InvalidArgument
from govmesh.paging import decode_key_token, encode_key_token
from services.crowd.domain import forecast, history, levels, occupancy, zones
from services.crowd.domain.decisions import Happening, LevelChanged, ZoneState
from services.crowd.domain.occupancy import Reading, RejectedReading, Rejection, SilenceEvent
from services.crowd.domain.zones import Level, Measure, SensorKind, ZoneConfig, ZoneRecord

#: Times a request may name (history windows): the system's data lies well inside them.
EARLIEST_TIME: Final = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
LATEST_TIME: Final = datetime.datetime(2100, 1, 1, tzinfo=datetime.UTC)

_LEVEL: Final = "RESPONSE_LEVEL_"
_MEASURE: Final = "MEASURE_"
_KIND: Final = "SENSOR_KIND_"
_REJECTION: Final = "READING_REJECTION_REASON_"


# ------------------------------------------------------------------------------------------------
# Enums and plain values


def level_pb(level: Level) -> pb.ResponseLevel.ValueType:
    return pb.ResponseLevel.ValueType(to_proto(pb.ResponseLevel, _LEVEL, level))


def measure_pb(measure: Measure) -> pb.Measure.ValueType:
    return pb.Measure.ValueType(to_proto(pb.Measure, _MEASURE, measure))


def kind_pb(kind: SensorKind) -> pb.SensorKind.ValueType:
    return pb.SensorKind.ValueType(to_proto(pb.SensorKind, _KIND, kind))


def rejection_reason_pb(reason: Rejection) -> pb.ReadingRejectionReason.ValueType:
    return pb.ReadingRejectionReason.ValueType(to_proto(pb.ReadingRejectionReason, _REJECTION, reason))


def level_of(value: pb.ResponseLevel.ValueType) -> Level | None:
    """The domain level of a contract value (None for UNSPECIFIED or a value no level names)."""
    return from_proto(Level, pb.ResponseLevel, _LEVEL, value)


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


def duration_pb(delta: datetime.timedelta) -> Duration:
    duration = Duration()
    duration.FromTimedelta(delta)
    return duration


def page_after(page_token: str) -> str | None:
    """The zone id a ListZones page token continues after (None: the first page)."""
    if not page_token:
        return None
    after = decode_key_token(page_token)
    if not zones.is_zone_id(after):
        raise InvalidArgument("page_token", "INVALID", "is not a token this service gave")
    return after


def page_token(last_zone_id: str | None) -> str:
    """The token of the page after the one ending at this zone ("" when there is none)."""
    return "" if last_zone_id is None else encode_key_token(last_zone_id)


# ------------------------------------------------------------------------------------------------
# Zones


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
                    level_of(rule.level),
                    rule.threshold_bp,
                    tuple(from_proto(Measure, pb.Measure, _MEASURE, m) for m in rule.measures),
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


def zone_pb(record: ZoneRecord) -> pb.Zone:
    config = record.config
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
        min_dwell=duration_pb(config.min_dwell),
        silence_after=duration_pb(config.silence_after),
        schedule=[
            pb.ScheduleEntry(
                name=entry.name,
                start_time=zones.format_local_time(entry.start_time),
                duration=duration_pb(entry.duration),
                iso_weekdays=sorted(entry.iso_weekdays),
                valid_from=entry.valid_from.isoformat() if entry.valid_from else "",
                valid_to=entry.valid_to.isoformat() if entry.valid_to else "",
            )
            for entry in config.schedule
        ],
        created_at=timestamp(record.created_at),
        updated_at=timestamp(record.updated_at),
    )


def status_pb(zone: ZoneState) -> pb.ZoneStatus:
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
    if zone.last_applied_at is not None:
        status.updated_at.CopyFrom(timestamp(zone.last_applied_at))
    return status


# ------------------------------------------------------------------------------------------------
# Readings


#: Sensor kinds by contract number, and the earliest and latest seconds a Timestamp may hold: the
#: hot path of every reading (a dict and two comparisons instead of enum names and ToDatetime's
#: checks, about twice as fast, measured; the same values).
_KIND_OF: Final = {int(pb.SensorKind.Value(_KIND + kind.name)): kind for kind in SensorKind}
_SECONDS: Final = range(-62_135_596_800, 253_402_300_800)
_EPOCH: Final = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def reading_from_pb(message: pb.SensorReading) -> Reading | RejectedReading:
    """The contract's reading as the domain reads it: unset fields are None, and occupancy's
    validation names them. A time no calendar holds is refused here, naming observed_at."""
    value = message.WhichOneof("value")
    observed_at = None
    if message.HasField("observed_at"):
        stamp = message.observed_at
        seconds, nanos = stamp.seconds, stamp.nanos
        try:
            if seconds not in _SECONDS or not 0 <= nanos < 1_000_000_000:
                raise ValueError
            observed_at = _EPOCH + datetime.timedelta(seconds=seconds, microseconds=nanos // 1000)
        except (ValueError, OverflowError):
            return RejectedReading(Rejection.ABSURD_VALUE, f"observed_at ({seconds} s, {nanos} ns) is not a time")
    return Reading(
        zone_id=message.zone_id,
        sensor_id=message.sensor_id,
        kind=_KIND_OF.get(message.sensor_kind),
        sequence=message.sequence,
        observed_at=observed_at,
        delta=message.delta if value == "delta" else None,
        absolute_count=message.absolute_count if value == "absolute_count" else None,
    )


def rejection_pb(index: int, reading: pb.SensorReading, refusal: RejectedReading) -> pb.ReadingRejection:
    """A ReportReadings refusal: the reading's place in the request and what it named."""
    return pb.ReadingRejection(
        index=index,
        zone_id=reading.zone_id,
        sensor_id=reading.sensor_id,
        sequence=reading.sequence,
        reason=rejection_reason_pb(refusal.reason),
        message=refusal.message,
    )


# ------------------------------------------------------------------------------------------------
# History and forecast


def history_window(request: pb.GetZoneHistoryRequest) -> tuple[datetime.datetime, datetime.datetime]:
    """The request's [start_time, end_time), both required."""
    for name in ("start_time", "end_time"):
        if not request.HasField(name):
            raise InvalidArgument(name, "REQUIRED", "is required")
    return datetime_of(request.start_time, "start_time"), datetime_of(request.end_time, "end_time")


def history_pb(summary: history.ZoneHistory) -> pb.GetZoneHistoryResponse:
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


def _durations_pb(durations: Sequence[history.LevelDuration]) -> list[pb.LevelDuration]:
    return [pb.LevelDuration(level=level_pb(d.level), duration=duration_pb(d.duration)) for d in durations]


def _peak_pb(peak: history.Peak | None) -> pb.Peak | None:
    if peak is None:
        return None
    return pb.Peak(occupancy=peak.occupancy, load_bp=peak.load_bp, level=level_pb(peak.level), at=timestamp(peak.at))


def forecast_pb(zone_id: str, result: forecast.Forecast) -> pb.ForecastResponse:
    return pb.ForecastResponse(
        zone_id=zone_id,
        generated_at=timestamp(result.generated_at),
        points=[_point_pb(p) for p in result.points],
        peak=_point_pb(result.peak) if result.peak else None,
        max_expected_level=level_pb(result.max_expected_level),
        measures_to_prepare=[measure_pb(m) for m in result.measures_to_prepare],
    )


def _point_pb(point: forecast.ForecastPoint) -> pb.ForecastPoint:
    return pb.ForecastPoint(
        at=timestamp(point.at),
        expected_occupancy=point.expected_occupancy,
        low_occupancy=point.low_occupancy,
        high_occupancy=point.high_occupancy,
        expected_load_bp=point.expected_load_bp,
        expected_level=level_pb(point.expected_level),
        scheduled_event=point.scheduled_event,
    )


# ------------------------------------------------------------------------------------------------
# Events


def events_pb(happenings: Sequence[Happening]) -> list[tuple[Message, str]]:
    """The events of what a unit of work decided, in order, each with its subject (the zone id)."""
    return [
        (level_changed_pb(h) if isinstance(h, LevelChanged) else sensor_silent_pb(h), h.zone_id) for h in happenings
    ]


def level_changed_pb(change: LevelChanged) -> events_pb2.LevelChanged:
    event = events_pb2.LevelChanged(
        zone_id=change.zone_id,
        zone_name_zh=change.zone_name_zh,
        previous_level=level_pb(change.previous),
        level=level_pb(change.level),
        occupancy=change.occupancy,
        capacity=change.capacity,
        load_bp=change.load_bp,
        measures_to_take=[measure_pb(m) for m in change.measures.to_take],
        measures_to_lift=[measure_pb(m) for m in change.measures.to_lift],
        changed_at=timestamp(change.decided_at),
    )
    if change.triggered_by_observed_at is not None:
        event.triggered_by_observed_at.CopyFrom(timestamp(change.triggered_by_observed_at))
    return event


def sensor_silent_pb(silence: SilenceEvent) -> events_pb2.SensorSilent:
    return events_pb2.SensorSilent(
        zone_id=silence.zone_id,
        sensor_id=silence.sensor_id,
        sensor_kind=kind_pb(silence.kind),
        last_sequence=silence.last_sequence,
        last_observed_at=timestamp(silence.last_observed_at),
        silence_after=duration_pb(silence.silence_after),
        detected_at=timestamp(silence.detected_at),
        sensors_healthy=silence.sensors_healthy,
        sensors_total=silence.sensors_total,
    )
