"""A zone's expected occupancy and level over the next hours, from its history and schedule (pure domain).

Answers Forecast: :func:`forecast` takes the zone's configuration, the current occupancy and level
and its past occupancy per five-minute bucket (:class:`~services.crowd.domain.history.OccupancyBucket`),
and returns a :class:`Forecast` whose fields match ForecastResponse and ForecastPoint; the
contract itself is not imported here.

The model (why it is this simple: docs/decisions/crowd-forecast-from-comparable-days.md):

* Points are at now + k·step for k = 1 .. horizon // step (horizon 1 to 1440 minutes, step 1 to 60,
  :data:`DEFAULT_STEP_MINUTES` 5, step at most the horizon, or there would be no point at all;
  anything else is a ValueError naming horizon_minutes or step_minutes).
* Comparable days for a point at t: the days of the last :data:`LOOKBACK_DAYS` (8 weeks) before
  today (Asia/Shanghai) of the same day type as t's date, working day or not (``is_holiday`` when
  given, which the app wires to the official calendar, so a holiday Monday compares with Sundays
  and an adjusted working Sunday with weekdays; otherwise Saturday and Sunday are the holidays),
  and, when the zone has a schedule, the same state at t's local time: a scheduled event running
  or not. A fountain show evening thus compares with show evenings, and the evening before the
  season opens with evenings without a show. Eight weeks is long enough for several of each kind
  of day, short enough to follow the season.
* On each comparable day, the bucket containing the same local time of day gives its
  mean_occupancy (the mean: a forecast is about the typical level of a five-minute stretch, not
  one reading's spike); days without that bucket are skipped. The expectation is the median of
  these values and the likely range their 10th and 90th percentiles (nearest rank on the sorted
  values, so every figure is an occupancy that was actually seen): robust to the odd unusual day.
* Today's ratio: today is not an average day (rain, a holiday crowd), and that deviation persists
  for a while. The ratio is current_occupancy against the same history's median at now's time of
  day, in per mille, clamped to [500, 2000] (a single odd reading must not multiply the forecast by
  ten); it scales the median and the range, and its effect fades linearly to nothing over
  :data:`RATIO_FADE_MINUTES` (3 hours) of lead time: recent deviation persists short-term, history
  dominates later. No history at now's time: the ratio is 1000 (nothing to compare with).
* No comparable value at all for a point: persistence, expected = low = high = the current
  occupancy, and the point says so (:attr:`ForecastPoint.basis` PERSISTENCE; the forecast's
  :attr:`Forecast.basis` is PERSISTENCE when every point is, MIXED when some are).
* expected_load_bp is levels.load_bp of the expected occupancy; expected_level is
  levels.level_for_load of it, the level whose entering threshold that load reaches, without
  hysteresis or dwell: a forecast says which measures will be needed, not how the live level will
  lag. scheduled_event is "name HH:MM" of the schedule entry running at t (zones.schedule_running:
  the one that started last when several are, ties by the schedule's order), else "".
* The peak is the point with the highest expected occupancy, the earliest on a tie;
  measures_to_prepare are the measures in force at max_expected_level that are not in force at
  current_level (levels above the current one up to the highest expected), in the order of the
  levels and of each level's measures.
* Times must be aware (zones.aware_utc: ValueError for a naive one, TypeError for a non-datetime).
* Integer arithmetic throughout (per mille and basis points, floor division), so the same inputs
  give the same forecast on every machine.
"""

from __future__ import annotations

import datetime
import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from govmesh.quantiles import percentile
from services.crowd.domain.history import BUCKET, OccupancyBucket, bucket_start
from services.crowd.domain.levels import check_capacity, level_for_load, load_bp
from services.crowd.domain.zones import (
    SHANGHAI,
    Level,
    Measure,
    ZoneConfig,
    aware_utc,
    format_local_time,
    is_int,
    local_instant,
    measures_in_force,
    schedule_running,
)

__all__ = [
    "DEFAULT_STEP_MINUTES",
    "HIGH_PERCENTILE",
    "LOOKBACK_DAYS",
    "LOW_PERCENTILE",
    "MAX_HORIZON_MINUTES",
    "MAX_RATIO_PERMILLE",
    "MAX_STEP_MINUTES",
    "MIN_RATIO_PERMILLE",
    "RATIO_FADE_MINUTES",
    "Basis",
    "Forecast",
    "ForecastPoint",
    "forecast",
]

MAX_HORIZON_MINUTES: Final = 1440
MAX_STEP_MINUTES: Final = 60
DEFAULT_STEP_MINUTES: Final = 5
#: How far back comparable days are looked for: 8 weeks.
LOOKBACK_DAYS: Final = 56
LOW_PERCENTILE: Final = 10
HIGH_PERCENTILE: Final = 90
_MEDIAN: Final = 50
#: Today's ratio is clamped to [0.5, 2.0] and fades out over this lead time.
MIN_RATIO_PERMILLE: Final = 500
MAX_RATIO_PERMILLE: Final = 2000
RATIO_FADE_MINUTES: Final = 180
_PERMILLE: Final = 1000

_ONE_DAY: Final = datetime.timedelta(days=1)


class Basis(enum.Enum):
    """What a forecast rests on."""

    HISTORY = "history"
    PERSISTENCE = "persistence"
    #: Only for a whole forecast: some points from history, some by persistence.
    MIXED = "mixed"


@dataclass(frozen=True)
class ForecastPoint:
    at: datetime.datetime
    expected_occupancy: int
    low_occupancy: int
    high_occupancy: int
    expected_load_bp: int
    expected_level: Level
    #: "name HH:MM" of the schedule entry running at ``at``, else "".
    scheduled_event: str
    #: HISTORY, or PERSISTENCE when no comparable day had a value.
    basis: Basis
    #: How many comparable days gave a value (0 for persistence).
    comparable_days: int


@dataclass(frozen=True)
class Forecast:
    zone_id: str
    generated_at: datetime.datetime
    points: tuple[ForecastPoint, ...]
    peak: ForecastPoint
    max_expected_level: Level
    measures_to_prepare: tuple[Measure, ...]
    basis: Basis
    #: Today's ratio before fading, per mille (1000 = a typical day).
    ratio_permille: int


class _History:
    """Past bucket means by the comparable days of an instant."""

    def __init__(
        self,
        config: ZoneConfig,
        now: datetime.datetime,
        buckets: Sequence[OccupancyBucket],
        is_holiday: Callable[[datetime.date], bool] | None,
    ) -> None:
        self._config = config
        self._is_holiday = is_holiday
        self._holiday: dict[datetime.date, bool] = {}
        self._means: dict[datetime.datetime, int] = {}
        for index, bucket in enumerate(buckets):
            start = aware_utc(f"buckets[{index}].start", bucket.start)
            if bucket_start(start) != start:
                raise ValueError(f"buckets[{index}].start must be aligned to {BUCKET} in UTC (got {start})")
            self._means[start] = bucket.mean_occupancy
        today = now.astimezone(SHANGHAI).date()
        self._days = [today - back * _ONE_DAY for back in range(1, LOOKBACK_DAYS + 1)]

    def holiday(self, day: datetime.date) -> bool:
        if day not in self._holiday:
            self._holiday[day] = bool(self._is_holiday(day)) if self._is_holiday else day.isoweekday() >= 6
        return self._holiday[day]

    def values(self, at: datetime.datetime) -> list[int]:
        """The sorted mean occupancies at ``at``'s local time of day on its comparable days."""
        local = at.astimezone(SHANGHAI)
        holiday = self.holiday(local.date())
        scheduled = bool(self._config.schedule) and schedule_running(self._config, at) is not None
        values: list[int] = []
        for day in self._days:
            if self.holiday(day) != holiday:
                continue
            then = local_instant(day, local.time())
            if self._config.schedule and (schedule_running(self._config, then) is not None) != scheduled:
                continue
            mean = self._means.get(bucket_start(then))
            if mean is not None:
                values.append(mean)
        return sorted(values)


def _check(
    config: ZoneConfig,
    current_occupancy: int,
    current_level: Level,
    horizon_minutes: int,
    step_minutes: int,
) -> None:
    if not is_int(horizon_minutes) or not 1 <= horizon_minutes <= MAX_HORIZON_MINUTES:
        raise ValueError(f"horizon_minutes must be from 1 to {MAX_HORIZON_MINUTES} (got {horizon_minutes!r})")
    if not is_int(step_minutes) or not 1 <= step_minutes <= MAX_STEP_MINUTES:
        raise ValueError(f"step_minutes must be from 1 to {MAX_STEP_MINUTES} (got {step_minutes!r})")
    if step_minutes > horizon_minutes:
        raise ValueError(
            f"step_minutes must not exceed horizon_minutes ({step_minutes} > {horizon_minutes}): no point would fit"
        )
    if not is_int(current_occupancy) or current_occupancy < 0:
        raise ValueError(f"current_occupancy must be a non-negative int (got {current_occupancy!r})")
    if not isinstance(current_level, Level):
        raise ValueError(f"current_level must be a Level (got {current_level!r})")
    check_capacity(config.capacity)


def forecast(
    config: ZoneConfig,
    now: datetime.datetime,
    current_occupancy: int,
    current_level: Level,
    buckets: Sequence[OccupancyBucket],
    horizon_minutes: int,
    step_minutes: int = DEFAULT_STEP_MINUTES,
    is_holiday: Callable[[datetime.date], bool] | None = None,
) -> Forecast:
    """The zone's forecast from ``now`` over ``horizon_minutes`` (see the module docstring for the model).

    ``buckets`` are the zone's past buckets (at least the last 8 weeks; others are ignored).
    ``is_holiday(date)`` says whether an Asia/Shanghai date is a weekend or holiday.
    """
    now = aware_utc("now", now)
    _check(config, current_occupancy, current_level, horizon_minutes, step_minutes)
    history = _History(config, now, buckets, is_holiday)

    at_now = history.values(now)
    if not at_now:
        ratio = _PERMILLE
    elif (typical := percentile(at_now, _MEDIAN)) == 0:
        ratio = _PERMILLE if current_occupancy == 0 else MAX_RATIO_PERMILLE
    else:
        ratio = min(MAX_RATIO_PERMILLE, max(MIN_RATIO_PERMILLE, current_occupancy * _PERMILLE // typical))

    points: list[ForecastPoint] = []
    for k in range(1, horizon_minutes // step_minutes + 1):
        lead = k * step_minutes
        at = now + datetime.timedelta(minutes=lead)
        # Linear fade of today's deviation: full at lead 0, none from RATIO_FADE_MINUTES on.
        fade = min(lead, RATIO_FADE_MINUTES)
        scale = (ratio * (RATIO_FADE_MINUTES - fade) + _PERMILLE * fade) // RATIO_FADE_MINUTES
        values = history.values(at)
        if values:
            expected = percentile(values, _MEDIAN) * scale // _PERMILLE
            low = percentile(values, LOW_PERCENTILE) * scale // _PERMILLE
            high = percentile(values, HIGH_PERCENTILE) * scale // _PERMILLE
            basis = Basis.HISTORY
        else:
            expected = low = high = current_occupancy
            basis = Basis.PERSISTENCE
        load = load_bp(expected, config.capacity)
        entry = schedule_running(config, at)
        points.append(
            ForecastPoint(
                at=at,
                expected_occupancy=expected,
                low_occupancy=low,
                high_occupancy=high,
                expected_load_bp=load,
                expected_level=level_for_load(config, load),
                scheduled_event="" if entry is None else f"{entry.name} {format_local_time(entry.start_time)}",
                basis=basis,
                comparable_days=len(values),
            )
        )

    peak = points[0]
    for point in points[1:]:
        if point.expected_occupancy > peak.expected_occupancy:
            peak = point
    max_level = max(point.expected_level for point in points)
    in_force = measures_in_force(config, current_level)
    to_prepare = tuple(measure for measure in measures_in_force(config, max_level) if measure not in in_force)
    bases = {point.basis for point in points}
    return Forecast(
        zone_id=config.zone_id,
        generated_at=now,
        points=tuple(points),
        peak=peak,
        max_expected_level=max_level,
        measures_to_prepare=to_prepare,
        basis=bases.pop() if len(bases) == 1 else Basis.MIXED,
        ratio_permille=ratio,
    )
