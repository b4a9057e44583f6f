"""A zone's sensors and its fused occupancy estimate (pure domain, no I/O, no clock).

Readings come in (:class:`Reading`, exactly as a govmesh.crowd.v1.SensorReading decodes), are
validated (:class:`Rejection`, the contract's ReadingRejectionReason without its prefix), deduped
and ordered per sensor by sequence (:class:`Outcome`), and applied to the zone's live state
(:class:`ZoneLive`, one :class:`SensorState` per sensor), whose fused occupancy is kept current.
:func:`apply` takes one reading; the timer calls :func:`tick` (:func:`detect_silence` then
:func:`recompute`) so that silent sensors are flagged once and their estimates age out. ``apply``
and ``tick`` mutate the :class:`ZoneLive` they are given; a rejected or duplicate reading leaves it
exactly as it was.

Rules (the decisions behind them: docs/decisions/crowd-event-time.md,
crowd-sequences-identify-readings.md, crowd-sensor-fusion.md, crowd-blind-zones-hold-their-level.md):

* The zone clock (:func:`zone_now`): ``watermark + max(0, wall_now - watermark_wall)``, or
  ``wall_now`` before any reading. The watermark advances only to a reading ahead of the zone
  clock and never past ``wall_now``. Every time this module reasons about (silence, freshness,
  too old) is zone time; only FUTURE_TIME is judged against the machine's clock.
* Validation order (the first failure is the reason): sensor_id (not set: MISSING_FIELD; longer
  than 128 or not printable: ABSURD_VALUE), sensor_kind, sequence (0 is proto3's "not set":
  MISSING_FIELD; negative or above 2^53: ABSURD_VALUE, since a sequence counts up from 1 and a
  negative one is a broken sensor, not a missing field), observed_at, the value (neither set, or
  the wrong one for the kind: MISSING_FIELD naming the field that should be set), absolute_count
  < 0 (NEGATIVE_COUNT), absolute_count > 10 x capacity or |delta| > capacity (ABSURD_VALUE:
  one reading cannot move more people than the zone holds; exactly 10 x capacity and |delta| =
  capacity pass), observed_at > wall_now + 5 min (FUTURE_TIME; exactly 5 min passes),
  observed_at < zone_now - 24 h (TOO_OLD; exactly 24 h passes), and a known sensor reporting
  another kind (SENSOR_KIND_MISMATCH). An unknown zone is the caller's check
  (:func:`unknown_zone` builds its rejection). A delta of 0 is valid: it is a gate's heartbeat.
* Sequences: (sensor_id, sequence) identifies a reading. The first reading seen from a sensor at
  sequence N leaves 1..N-1 missing. Above the highest: ACCEPTED; a missing one: LATE; anything
  else: DUPLICATE (no effect, even with a different value). Missing sequences are sorted,
  disjoint, non-adjacent inclusive ranges, at most :data:`MAX_MISSING_RANGES` (256) per sensor;
  beyond that the lowest range is forgotten and ``floor_sequence`` rises to its top: a reading at
  or below the floor is TOO_OLD (so a duplicate that old is counted as rejected, not as a
  duplicate; it is not applied either way).
* Values: a gate counter's value is the net sum of every delta accepted from it, late ones
  included (deltas commute, so late deltas count exactly); the zone keeps the running sum of its
  gates (``ZoneLive.gate_total``), updated in O(1). A camera's or phone-signal sensor's value is the
  count of its highest sequence: a late reading is accepted (and counted) but does not replace it.
  ``last_observed_at`` is the latest observation time of any accepted reading (normally that of
  the highest sequence): it says when the sensor was last heard of, which is what silence and
  freshness are about.
* Fusion (:func:`fuse`): the sources are the gates together (estimate max(0, gate total)) and
  each camera and phone-signal sensor (estimate its value). Weight = :data:`KIND_WEIGHTS` (gate 4,
  camera 2, phone signal 1) x freshness per mille: 1000 while zone_now - last_observed_at <=
  silence_after, then falling linearly (rounded down) to 0 at 2 x silence_after; the gate
  source's freshness is the least of its gates'. Occupancy is sum(w x e) / sum(w) rounded half
  up, in integers. When every weight is 0 (no sensor yet, or all aged out) the zone is blind:
  occupancy 0 and ``blind`` True (the level logic must not read that 0 as empty).
* Silence (:func:`detect_silence`): flagged when zone_now - last_observed_at > silence_after
  (exactly silence_after is still healthy), once per silence, with the fields of events.proto's
  SensorSilent; ``silent_since`` is the zone time it was detected. An accepted reading recovers a
  silent sensor if, once applied, the sensor is no longer past silence_after
  (``ApplyResult.recovered``); a late backfill of old readings does not, or the next tick would
  flag it again. Healthy counts (:func:`sensors_healthy`) are of the flags.
* Times must be aware datetimes (ValueError otherwise: a decoding bug, not a bad reading); they
  are kept in UTC. All arithmetic on counts and weights is integer.
"""

from __future__ import annotations

import bisect
import datetime
import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from services.crowd.domain.zones import SensorKind, ZoneConfig, aware_utc, is_int, shown_id

__all__ = [
    "ABSURD_COUNT_FACTOR",
    "EARLIEST_OBSERVATION",
    "FRESH",
    "FUTURE_SKEW",
    "KIND_WEIGHTS",
    "MAX_LATENESS",
    "MAX_MISSING_RANGES",
    "MAX_SENSOR_ID_LENGTH",
    "MAX_SEQUENCE",
    "ApplyResult",
    "Estimate",
    "Outcome",
    "Reading",
    "RejectedReading",
    "Rejection",
    "SensorKind",
    "SensorState",
    "SilenceEvent",
    "Source",
    "TickResult",
    "ZoneLive",
    "apply",
    "detect_silence",
    "freshness",
    "fuse",
    "highest_last_count",
    "missing_from_json",
    "missing_to_json",
    "recompute",
    "sensors_healthy",
    "sensors_total",
    "tick",
    "unknown_zone",
    "validate",
    "zone_now",
]

#: A reading observed more than this far ahead of the server's clock is FUTURE_TIME: sensors'
#: clocks drift, but not by more than this.
FUTURE_SKEW: Final = datetime.timedelta(minutes=5)
#: A reading observed more than this long before the zone clock is TOO_OLD: a day covers a
#: sensor that buffered through a network outage; anything older would rewrite settled history.
MAX_LATENESS: Final = datetime.timedelta(hours=24)
#: No sensor of this system observed anything before this: an earlier time is a sensor's unset
#: clock (e.g. a zero time), not a replay, and would also set a new zone's clock to year 1.
EARLIEST_OBSERVATION: Final = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
#: An absolute count above this many times the zone's capacity is ABSURD_VALUE (an overfull zone
#: is what the service exists to see, so the bound is generous).
ABSURD_COUNT_FACTOR: Final = 10
#: Sequences are at most 2^53, so they survive a JSON number (a double) unchanged.
MAX_SEQUENCE: Final = 2**53
MAX_SENSOR_ID_LENGTH: Final = 128
#: Missing-sequence ranges kept per sensor; beyond that the lowest are forgotten (floor_sequence).
MAX_MISSING_RANGES: Final = 256
#: Freshness of a source that is not past silence_after, in per mille.
FRESH: Final = 1000
#: How much each kind of sensor is trusted (docs/decisions/crowd-sensor-fusion.md).
KIND_WEIGHTS: Final[dict[SensorKind, int]] = {
    SensorKind.GATE_COUNTER: 4,
    SensorKind.CAMERA: 2,
    SensorKind.PHONE_SIGNAL: 1,
}

_MICROSECOND: Final = datetime.timedelta(microseconds=1)
_KIND_LABEL: Final = {
    SensorKind.GATE_COUNTER: "a gate counter",
    SensorKind.CAMERA: "a camera",
    SensorKind.PHONE_SIGNAL: "a phone-signal estimate",
}


def _aware_or_none(name: str, value: object) -> datetime.datetime | None:
    return None if value is None else aware_utc(name, value)


# --- readings and their verdicts ---------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    """One sensor reading, as a SensorReading of the contract decodes: None stands for a field
    that is not set (sensor_kind UNSPECIFIED, no observed_at, neither arm of the value oneof).
    Only what the contract cannot produce raises here (both value arms set, a naive time); every
    other defect is for :func:`validate` to reject with a reason."""

    zone_id: str
    sensor_id: str
    kind: SensorKind | None
    sequence: int
    observed_at: datetime.datetime | None
    delta: int | None = None
    absolute_count: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.zone_id, str) or not isinstance(self.sensor_id, str):
            raise TypeError("zone_id and sensor_id must be strings")
        if self.kind is not None and not isinstance(self.kind, SensorKind):
            raise TypeError(f"kind must be a SensorKind or None, not {self.kind!r}")
        for name in ("sequence", "delta", "absolute_count"):
            value = getattr(self, name)
            if value is not None and not is_int(value):
                raise TypeError(f"{name} must be an int, not {type(value).__name__}")
        if self.delta is not None and self.absolute_count is not None:
            raise ValueError("delta and absolute_count are one oneof: a reading carries at most one of them")
        object.__setattr__(self, "observed_at", _aware_or_none("observed_at", self.observed_at))


class Rejection(enum.Enum):
    """Names match govmesh.crowd.v1.ReadingRejectionReason without the READING_REJECTION_REASON_ prefix."""

    UNKNOWN_ZONE = "unknown_zone"
    MISSING_FIELD = "missing_field"
    NEGATIVE_COUNT = "negative_count"
    ABSURD_VALUE = "absurd_value"
    FUTURE_TIME = "future_time"
    TOO_OLD = "too_old"
    SENSOR_KIND_MISMATCH = "sensor_kind_mismatch"
    #: Broker only: the reading names another zone than the routing key its message was queued by.
    MISROUTED = "misrouted"


@dataclass(frozen=True)
class RejectedReading:
    """Why a reading was refused; ``message`` is an English sentence naming the field."""

    reason: Rejection
    message: str


class Outcome(enum.Enum):
    """What became of a valid reading."""

    #: Applied; its sequence is the sensor's new highest.
    ACCEPTED = "accepted"
    #: Applied, but it arrived out of order: it fills a gap below the sensor's highest sequence.
    LATE = "late"
    #: Already seen (same sensor and sequence); ignored.
    DUPLICATE = "duplicate"


def unknown_zone(zone_id: str) -> RejectedReading:
    """The rejection of a reading whose zone_id names no zone (the caller looks zones up)."""
    if not zone_id:
        return RejectedReading(Rejection.UNKNOWN_ZONE, "zone_id is not set: a reading must name its zone")
    return RejectedReading(Rejection.UNKNOWN_ZONE, f"zone_id {shown_id(zone_id)} names no zone")


# --- live state ----------------------------------------------------------------------------------


@dataclass
class SensorState:
    """One sensor of a zone, as the store keeps it (one row of plain fields; ``missing`` goes
    through :func:`missing_to_json` / :func:`missing_from_json`). See the module docstring for
    what ``value``, ``last_observed_at`` and ``floor_sequence`` mean."""

    sensor_id: str
    kind: SensorKind
    #: The highest sequence accepted.
    last_sequence: int
    last_observed_at: datetime.datetime
    #: Gate counter: net sum of its accepted deltas; camera, phone signal: its latest count.
    value: int
    #: Sequences below last_sequence not received yet: sorted, disjoint, non-adjacent, inclusive.
    missing: list[tuple[int, int]] = field(default_factory=list)
    #: Sequences at or below this are no longer tracked (TOO_OLD); 0 until ranges overflow.
    floor_sequence: int = 0
    silent: bool = False
    #: The zone time the current silence was detected; None while healthy.
    silent_since: datetime.datetime | None = None

    def __post_init__(self) -> None:
        # A row read back from the store is checked as hard as a new reading: a state that breaks
        # these would count wrongly forever, so it must stop here.
        if not isinstance(self.sensor_id, str) or not self.sensor_id:
            raise ValueError("sensor_id must be a non-empty string")
        if not isinstance(self.kind, SensorKind):
            raise TypeError(f"kind must be a SensorKind, not {self.kind!r}")
        for name in ("last_sequence", "value", "floor_sequence"):
            if not is_int(getattr(self, name)):
                raise TypeError(f"{name} must be an int")
        if not 1 <= self.last_sequence <= MAX_SEQUENCE:
            raise ValueError(f"last_sequence must be 1 to 2^53 (got {self.last_sequence})")
        if not 0 <= self.floor_sequence < self.last_sequence:
            raise ValueError(
                f"floor_sequence must be 0 to last_sequence - 1 (got {self.floor_sequence}, "
                f"last_sequence {self.last_sequence})"
            )
        if self.kind is not SensorKind.GATE_COUNTER and self.value < 0:
            raise ValueError(f"value of {_KIND_LABEL[self.kind]} must not be negative (got {self.value})")
        self.missing = _check_ranges(self.missing, self.floor_sequence, self.last_sequence)
        self.last_observed_at = aware_utc("last_observed_at", self.last_observed_at)
        self.silent_since = _aware_or_none("silent_since", self.silent_since)
        if not isinstance(self.silent, bool) or self.silent != (self.silent_since is not None):
            raise ValueError("silent must be a bool, and silent_since is set exactly when the sensor is silent")

    def is_missing(self, sequence: int) -> bool:
        return _range_index(self.missing, sequence) is not None

    def missing_count(self) -> int:
        """How many sequences below last_sequence are still awaited."""
        return sum(hi - lo + 1 for lo, hi in self.missing)


def _check_ranges(ranges: object, floor: int, last: int) -> list[tuple[int, int]]:
    if not isinstance(ranges, list):
        raise TypeError("missing must be a list of (lo, hi) ranges")
    checked: list[tuple[int, int]] = []
    previous_hi = floor
    for item in ranges:
        if not isinstance(item, tuple | list) or len(item) != 2 or not all(is_int(x) for x in item):
            raise ValueError(f"missing: {item!r} is not a [lo, hi] pair of ints")
        lo, hi = item
        # Non-adjacent: a received sequence separates any two ranges (else they would be one).
        if not (previous_hi + (1 if not checked else 2) <= lo <= hi < last):
            raise ValueError(
                f"missing: range [{lo}, {hi}] must be sorted, disjoint and non-adjacent, above floor_sequence "
                f"{floor} and below last_sequence {last}"
            )
        checked.append((lo, hi))
        previous_hi = hi
    if len(checked) > MAX_MISSING_RANGES:
        raise ValueError(f"missing holds {len(checked)} ranges: at most {MAX_MISSING_RANGES} are kept")
    return checked


def missing_to_json(ranges: Iterable[tuple[int, int]]) -> list[list[int]]:
    """Missing ranges as plain JSON: [[lo, hi], ...]."""
    return [[lo, hi] for lo, hi in ranges]


def missing_from_json(data: object) -> list[tuple[int, int]]:
    """The inverse of :func:`missing_to_json`; SensorState checks the ranges' order and bounds."""
    if not isinstance(data, list):
        raise ValueError(f"missing must be a JSON list of [lo, hi] pairs, not {type(data).__name__}")
    ranges: list[tuple[int, int]] = []
    for item in data:
        if not isinstance(item, list) or len(item) != 2 or not all(is_int(x) for x in item):
            raise ValueError(f"missing: {item!r} is not a [lo, hi] pair of integers")
        ranges.append((item[0], item[1]))
    return ranges


@dataclass
class ZoneLive:
    """A zone's live state. ``gate_total`` (the sum of its gates' values) is derived from the
    sensors at construction and kept current by :func:`apply`; ``occupancy`` and ``blind`` are the
    last fused estimate (call :func:`recompute` after loading a stored state)."""

    sensors: dict[str, SensorState] = field(default_factory=dict)
    #: The latest observation time the zone clock has reached (event time); None before any reading.
    watermark: datetime.datetime | None = None
    #: The machine time at which the watermark last advanced.
    watermark_wall: datetime.datetime | None = None
    occupancy: int = 0
    blind: bool = True
    gate_total: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        for key, state in self.sensors.items():
            if not isinstance(state, SensorState) or key != state.sensor_id:
                raise ValueError(f"sensors[{key!r}] must be the SensorState of sensor {key!r}")
        if (self.watermark is None) != (self.watermark_wall is None):
            raise ValueError("watermark and watermark_wall are set together")
        self.watermark = _aware_or_none("watermark", self.watermark)
        self.watermark_wall = _aware_or_none("watermark_wall", self.watermark_wall)
        if not is_int(self.occupancy) or self.occupancy < 0:
            raise ValueError(f"occupancy must be a non-negative int (got {self.occupancy!r})")
        self.gate_total = sum(s.value for s in self.sensors.values() if s.kind is SensorKind.GATE_COUNTER)


def zone_now(live: ZoneLive, wall_now: datetime.datetime) -> datetime.datetime:
    """The zone clock: watermark + max(0, wall_now - watermark_wall), or wall_now before any
    reading (module docstring). Never ahead of wall_now, never behind the watermark."""
    wall = aware_utc("wall_now", wall_now)
    if live.watermark is None or live.watermark_wall is None:
        return wall
    return live.watermark + max(datetime.timedelta(0), wall - live.watermark_wall)


def highest_last_count(live: ZoneLive) -> int:
    """The most people any source last reported: the gates' sum or a camera's or phone estimate's
    last count, however old. What a blind zone may still rise on: with no fresh evidence, the
    safe reading of old evidence is the highest."""
    counts = [max(0, live.gate_total)] if any(s.kind is SensorKind.GATE_COUNTER for s in live.sensors.values()) else []
    counts += [s.value for s in live.sensors.values() if s.kind is not SensorKind.GATE_COUNTER]
    return max(counts, default=0)


def sensors_total(live: ZoneLive) -> int:
    return len(live.sensors)


def sensors_healthy(live: ZoneLive) -> int:
    """Sensors not flagged silent."""
    return sum(1 for s in live.sensors.values() if not s.silent)


# --- validation ----------------------------------------------------------------------------------


def _reject(reason: Rejection, message: str) -> RejectedReading:
    return RejectedReading(reason, message)


def validate(
    config: ZoneConfig, live: ZoneLive, reading: Reading, wall_now: datetime.datetime
) -> RejectedReading | None:
    """Why the reading must be refused, or None if it may be applied (in the module docstring's
    order). Does not look at sequences already seen: that is :func:`apply`'s ordering."""
    wall = aware_utc("wall_now", wall_now)
    if not reading.sensor_id:
        return _reject(Rejection.MISSING_FIELD, "sensor_id is not set: every reading must name its sensor")
    if len(reading.sensor_id) > MAX_SENSOR_ID_LENGTH:
        return _reject(
            Rejection.ABSURD_VALUE,
            f"sensor_id is {len(reading.sensor_id)} characters long: at most {MAX_SENSOR_ID_LENGTH} are allowed",
        )
    if not reading.sensor_id.isprintable():
        return _reject(
            Rejection.ABSURD_VALUE,
            f"sensor_id {reading.sensor_id!r} contains a non-printable character: sensor ids must be printable",
        )
    kind = reading.kind
    if kind is None:
        return _reject(
            Rejection.MISSING_FIELD,
            "sensor_kind is not set: a reading must say whether it comes from a gate counter, a camera "
            "or a phone-signal estimate",
        )
    if reading.sequence == 0:
        return _reject(Rejection.MISSING_FIELD, "sequence is not set (0): a sensor numbers its readings from 1")
    if reading.sequence < 0:
        return _reject(
            Rejection.ABSURD_VALUE,
            f"sequence {reading.sequence} is negative: a sensor numbers its readings upwards from 1",
        )
    if reading.sequence > MAX_SEQUENCE:
        return _reject(
            Rejection.ABSURD_VALUE,
            f"sequence {reading.sequence} is above 2^53 ({MAX_SEQUENCE}): no sensor sends that many readings",
        )
    observed = reading.observed_at
    if observed is None:
        return _reject(Rejection.MISSING_FIELD, "observed_at is not set: a reading must say when it was observed")
    if reading.delta is None and reading.absolute_count is None:
        return _reject(
            Rejection.MISSING_FIELD,
            "neither delta nor absolute_count is set: a reading must carry a value",
        )
    if kind is SensorKind.GATE_COUNTER and reading.delta is None:
        return _reject(
            Rejection.MISSING_FIELD,
            "delta is not set: a gate counter reports deltas (entries minus exits), but this reading "
            "carries absolute_count",
        )
    if kind is not SensorKind.GATE_COUNTER and reading.absolute_count is None:
        return _reject(
            Rejection.MISSING_FIELD,
            f"absolute_count is not set: {_KIND_LABEL[kind]} reports absolute counts, but this reading carries delta",
        )
    capacity = config.capacity
    if reading.absolute_count is not None:
        if reading.absolute_count < 0:
            return _reject(
                Rejection.NEGATIVE_COUNT,
                f"absolute_count {reading.absolute_count} is negative: {_KIND_LABEL[kind]} cannot count fewer "
                "than zero people",
            )
        if reading.absolute_count > ABSURD_COUNT_FACTOR * capacity:
            return _reject(
                Rejection.ABSURD_VALUE,
                f"absolute_count {reading.absolute_count} is more than {ABSURD_COUNT_FACTOR} times the zone's "
                f"capacity of {capacity}: no sensor could see that many people there",
            )
    if reading.delta is not None and abs(reading.delta) > capacity:
        return _reject(
            Rejection.ABSURD_VALUE,
            f"delta {reading.delta} moves more people than the zone's capacity of {capacity} in one reading",
        )
    if observed < EARLIEST_OBSERVATION:
        return _reject(
            Rejection.TOO_OLD,
            f"observed_at {observed.isoformat()} is before {EARLIEST_OBSERVATION.date().isoformat()}: the sensor's "
            "clock is unset or wrong",
        )
    if observed > wall + FUTURE_SKEW:
        return _reject(
            Rejection.FUTURE_TIME,
            f"observed_at {observed.isoformat()} is more than {_minutes(FUTURE_SKEW)} ahead of the server's "
            f"clock ({wall.isoformat()}): the sensor's clock is wrong",
        )
    # A fresh zone has no clock yet: its first reading sets it, however old (how a replay starts).
    if live.watermark is not None:
        now = zone_now(live, wall)
        if observed < now - MAX_LATENESS:
            return _reject(
                Rejection.TOO_OLD,
                f"observed_at {observed.isoformat()} is more than {_hours(MAX_LATENESS)} before the zone's "
                f"clock ({now.isoformat()}): too old to apply",
            )
    known = live.sensors.get(reading.sensor_id)
    if known is not None and known.kind is not kind:
        return _reject(
            Rejection.SENSOR_KIND_MISMATCH,
            f"sensor_kind {kind.value} does not match {known.kind.value}, the kind sensor "
            f"{reading.sensor_id!r} reported before",
        )
    return None


def _minutes(delta: datetime.timedelta) -> str:
    return f"{delta // datetime.timedelta(minutes=1)} minutes"


def _hours(delta: datetime.timedelta) -> str:
    return f"{delta // datetime.timedelta(hours=1)} hours"


# --- missing ranges ------------------------------------------------------------------------------


def _range_index(ranges: list[tuple[int, int]], sequence: int) -> int | None:
    i = bisect.bisect_right(ranges, sequence, key=lambda r: r[0]) - 1
    if i >= 0 and ranges[i][1] >= sequence:
        return i
    return None


def _bound_ranges(state: SensorState) -> None:
    # The lowest ranges are the oldest gaps, the least likely ever to be filled.
    excess = len(state.missing) - MAX_MISSING_RANGES
    if excess > 0:
        state.floor_sequence = state.missing[excess - 1][1]
        del state.missing[:excess]


# --- fusion --------------------------------------------------------------------------------------


def freshness(config: ZoneConfig, state: SensorState, now: datetime.datetime) -> int:
    """Per mille: 1000 while now - last_observed_at <= silence_after, falling linearly (rounded
    down) to 0 at 2 x silence_after."""
    silence = config.silence_after
    if silence <= datetime.timedelta(0):
        raise ValueError(f"silence_after must be positive (got {silence})")
    age = now - state.last_observed_at
    if age <= silence:
        return FRESH
    if age >= 2 * silence:
        return 0
    return FRESH * ((2 * silence - age) // _MICROSECOND) // (silence // _MICROSECOND)


@dataclass(frozen=True)
class Source:
    """One input of the fusion: the gates together, or one camera or phone-signal sensor."""

    kind: SensorKind
    sensor_ids: tuple[str, ...]
    estimate: int
    freshness: int
    weight: int


@dataclass(frozen=True)
class Estimate:
    """The fused occupancy at a zone time, and the sources it came from (sorted by kind weight,
    then sensor id)."""

    occupancy: int
    blind: bool
    zone_now: datetime.datetime
    sources: tuple[Source, ...]

    @property
    def total_weight(self) -> int:
        return sum(s.weight for s in self.sources)


#: (kind, sensor ids, estimate, freshness, weight): a Source without the object, for the hot path.
_SourceTuple = tuple[SensorKind, tuple[str, ...], int, int, int]


def _sources(config: ZoneConfig, live: ZoneLive, now: datetime.datetime) -> list[_SourceTuple]:
    # O(sensors) and unordered: the sums below do not depend on the order. Plain tuples, because
    # ingestion fuses after every reading.
    sources: list[_SourceTuple] = []
    gate_ids: list[str] = []
    gate_freshness = FRESH
    for state in live.sensors.values():
        fresh = freshness(config, state, now)
        if state.kind is SensorKind.GATE_COUNTER:
            gate_ids.append(state.sensor_id)
            gate_freshness = min(gate_freshness, fresh)
        else:
            sources.append((state.kind, (state.sensor_id,), state.value, fresh, KIND_WEIGHTS[state.kind] * fresh))
    if gate_ids:
        weight = KIND_WEIGHTS[SensorKind.GATE_COUNTER] * gate_freshness
        sources.append((SensorKind.GATE_COUNTER, tuple(gate_ids), max(0, live.gate_total), gate_freshness, weight))
    return sources


def _fused(sources: list[_SourceTuple]) -> int | None:
    """Round half up of sum(w x e) / sum(w); None when blind (every weight 0)."""
    total_weight = sum(s[4] for s in sources)
    if total_weight == 0:
        return None
    weighted = sum(s[4] * s[2] for s in sources)
    # floor((2a + b) / 2b) for the non-negative a = weighted, b = total_weight.
    return (2 * weighted + total_weight) // (2 * total_weight)


def fuse(config: ZoneConfig, live: ZoneLive, wall_now: datetime.datetime) -> Estimate:
    """The fused occupancy estimate (module docstring), with its sources; changes nothing."""
    now = zone_now(live, wall_now)
    sources = _sources(config, live, now)
    occupancy = _fused(sources)
    ordered = sorted(
        (Source(kind, tuple(sorted(ids)), estimate, fresh, weight) for kind, ids, estimate, fresh, weight in sources),
        key=lambda s: (-KIND_WEIGHTS[s.kind], s.sensor_ids),
    )
    return Estimate(occupancy or 0, occupancy is None, now, tuple(ordered))


def recompute(config: ZoneConfig, live: ZoneLive, wall_now: datetime.datetime) -> int:
    """Fuses the estimate at ``wall_now`` (O(sensors)), stores it in live.occupancy / live.blind
    and returns it."""
    occupancy = _fused(_sources(config, live, zone_now(live, wall_now)))
    live.occupancy = occupancy or 0
    live.blind = occupancy is None
    return live.occupancy


# --- applying a reading --------------------------------------------------------------------------


@dataclass(frozen=True)
class ApplyResult:
    """What :func:`apply` did: exactly one of ``outcome`` and ``rejection`` is set. ``occupancy``
    is the zone's estimate afterwards (unchanged, not recomputed, for a duplicate or a rejection)."""

    outcome: Outcome | None
    rejection: RejectedReading | None
    occupancy: int
    occupancy_changed: bool = False
    #: A silent sensor became healthy again (a SENSORS update).
    recovered: bool = False
    #: The reading's sensor was not known before (sensors_total grew: a SENSORS update).
    new_sensor: bool = False

    @property
    def applied(self) -> bool:
        return self.outcome is Outcome.ACCEPTED or self.outcome is Outcome.LATE

    @property
    def sensors_changed(self) -> bool:
        return self.recovered or self.new_sensor


def apply(config: ZoneConfig, live: ZoneLive, reading: Reading, wall_now: datetime.datetime) -> ApplyResult:
    """Validates, dedupes and applies one reading to ``live`` (mutated in place unless the reading
    is rejected or a duplicate), then recomputes the occupancy. O(sensors), for the fusion; the
    gate sum is kept in O(1) and the missing ranges are searched in O(log ranges)."""
    if reading.zone_id != config.zone_id:
        raise ValueError(
            f"reading.zone_id {reading.zone_id!r} is not the zone {config.zone_id!r} it was applied to; the caller "
            "routes readings by zone_id"
        )
    wall = aware_utc("wall_now", wall_now)
    rejection = validate(config, live, reading, wall)
    if rejection is not None:
        return ApplyResult(None, rejection, live.occupancy)
    # validate() has made sure of these; the asserts narrow the types.
    kind, observed = reading.kind, reading.observed_at
    assert kind is not None and observed is not None
    value = reading.delta if kind is SensorKind.GATE_COUNTER else reading.absolute_count
    assert value is not None
    sequence = reading.sequence

    state = live.sensors.get(reading.sensor_id)
    new_sensor = state is None
    if state is None:
        # Sequences start at 1: those before the first one seen may still arrive.
        state = SensorState(
            sensor_id=reading.sensor_id,
            kind=kind,
            last_sequence=sequence,
            last_observed_at=observed,
            value=0,
            missing=[(1, sequence - 1)] if sequence > 1 else [],
        )
        outcome = Outcome.ACCEPTED
    elif sequence <= state.floor_sequence:
        return ApplyResult(
            None,
            _reject(
                Rejection.TOO_OLD,
                f"sequence {sequence} is at or below {state.floor_sequence}, below which sensor "
                f"{reading.sensor_id!r}'s missing readings are no longer tracked: too old to apply",
            ),
            live.occupancy,
        )
    elif sequence > state.last_sequence:
        if sequence > state.last_sequence + 1:
            state.missing.append((state.last_sequence + 1, sequence - 1))
        state.last_sequence = sequence
        outcome = Outcome.ACCEPTED
    else:
        index = _range_index(state.missing, sequence)
        if index is None:
            return ApplyResult(Outcome.DUPLICATE, None, live.occupancy)
        lo, hi = state.missing[index]
        state.missing[index : index + 1] = [r for r in ((lo, sequence - 1), (sequence + 1, hi)) if r[0] <= r[1]]
        outcome = Outcome.LATE
    _bound_ranges(state)
    if new_sensor:
        live.sensors[state.sensor_id] = state

    if kind is SensorKind.GATE_COUNTER:
        state.value += value
        live.gate_total += value
    elif outcome is Outcome.ACCEPTED:
        state.value = value
    state.last_observed_at = max(state.last_observed_at, observed)

    _advance_clock(live, observed, wall)
    now = zone_now(live, wall)
    recovered = False
    if state.silent and now - state.last_observed_at <= config.silence_after:
        state.silent = False
        state.silent_since = None
        recovered = True
    before = live.occupancy
    after = recompute(config, live, wall)
    return ApplyResult(outcome, None, after, after != before, recovered, new_sensor)


def _advance_clock(live: ZoneLive, observed: datetime.datetime, wall: datetime.datetime) -> None:
    # Capped at the wall clock, and only forwards (module docstring).
    candidate = min(observed, wall)
    if live.watermark is None or candidate > zone_now(live, wall):
        live.watermark = candidate
        live.watermark_wall = wall


# --- silence -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SilenceEvent:
    """A sensor just flagged silent: the fields of events.proto's SensorSilent. The healthy and
    total counts are the zone's right after this sensor's change."""

    zone_id: str
    sensor_id: str
    kind: SensorKind
    last_sequence: int
    last_observed_at: datetime.datetime
    silence_after: datetime.timedelta
    detected_at: datetime.datetime
    sensors_healthy: int
    sensors_total: int


def detect_silence(config: ZoneConfig, live: ZoneLive, wall_now: datetime.datetime) -> list[SilenceEvent]:
    """Flags every healthy sensor quiet for longer than silence_after (zone time) as silent and
    returns one event per sensor flagged, in sensor id order; a sensor already silent gives none."""
    now = zone_now(live, wall_now)
    healthy = sensors_healthy(live)
    events: list[SilenceEvent] = []
    for state in sorted(live.sensors.values(), key=lambda s: s.sensor_id):
        if state.silent or now - state.last_observed_at <= config.silence_after:
            continue
        state.silent = True
        state.silent_since = now
        healthy -= 1
        events.append(
            SilenceEvent(
                zone_id=config.zone_id,
                sensor_id=state.sensor_id,
                kind=state.kind,
                last_sequence=state.last_sequence,
                last_observed_at=state.last_observed_at,
                silence_after=config.silence_after,
                detected_at=now,
                sensors_healthy=healthy,
                sensors_total=len(live.sensors),
            )
        )
    return events


@dataclass(frozen=True)
class TickResult:
    silences: tuple[SilenceEvent, ...]
    occupancy: int
    occupancy_changed: bool
    blind: bool


def tick(config: ZoneConfig, live: ZoneLive, wall_now: datetime.datetime) -> TickResult:
    """The timer's step: :func:`detect_silence`, then :func:`recompute` as estimates age."""
    silences = detect_silence(config, live, wall_now)
    before = live.occupancy
    after = recompute(config, live, wall_now)
    return TickResult(tuple(silences), after, after != before, live.blind)
