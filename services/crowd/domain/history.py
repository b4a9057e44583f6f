"""A zone's history over a time window: time at each level, peaks, level changes and barrier days (pure domain).

Answers GetZoneHistory. The store hands over plain values: every level change of the zone in time
order (:class:`LevelChange`), the level in force at the window's start, and the zone's occupancy
per five-minute bucket (:class:`OccupancyBucket`); :func:`summarise` turns them into a
:class:`ZoneHistory` (the window as a whole, then every Asia/Shanghai calendar day of it). The
names of the fields match GetZoneHistoryResponse, ZoneDay, LevelDuration and Peak; the contract
itself is not imported here.

Rules (why: docs/decisions/crowd-history-windows-and-days.md):

* The window is half-open, [start, end), at most :data:`MAX_WINDOW` (400 days, the contract's
  limit); anything else is a ValueError naming start_time or end_time (:func:`check_window`, which
  the app calls before it queries the store). Times must be aware (zones.aware_utc: ValueError
  for a naive one, TypeError for a non-datetime); everything is done in UTC.
* A level change takes effect at its instant: one at exactly ``start`` is in the window, one at
  exactly ``end`` is not. ``level_at_start`` is the level from the changes *before* start.
  Changes outside the window are ignored, so the caller may pass more than the window; they must
  be in time order (ValueError otherwise: a summary of shuffled changes would be silently wrong).
* Time at each level: always NONE, III, II, I in that order, zero durations included, adding up
  to end - start exactly (each day's to that day's part of the window). Several changes at one
  instant: the last is in force; the others still count as changes and as levels reached.
* Days are Asia/Shanghai calendar days, their midnights computed with zoneinfo; the first and
  last day may be partial. A day's barriers_up: a level whose measures in force include
  BARRIERS_UP was in force for a non-zero time that day, or was entered that day.
* Peaks: the bucket with the highest max_occupancy whose max_at lies in the window (a bucket
  straddling an edge counts only when its maximum was inside); ties go to the earliest max_at; a
  day's peak likewise within the day. No such bucket: no peak (None). The peak's level is the
  level in force at its max_at; its load_bp is levels.load_bp (floor; may exceed 10000).
"""

from __future__ import annotations

import bisect
import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from services.crowd.domain.levels import check_capacity, load_bp
from services.crowd.domain.zones import (
    SHANGHAI,
    Level,
    Measure,
    ZoneConfig,
    aware_utc,
    local_instant,
    measures_in_force,
)

__all__ = [
    "BUCKET",
    "MAX_WINDOW",
    "BucketTally",
    "LevelChange",
    "LevelDuration",
    "OccupancyBucket",
    "Peak",
    "Tallies",
    "ZoneDay",
    "ZoneHistory",
    "bucket_start",
    "check_window",
    "summarise",
    "tally",
]

#: Occupancy is kept per bucket of this length, starts aligned to multiples of it in UTC.
BUCKET: Final = datetime.timedelta(minutes=5)
#: The longest window GetZoneHistory answers (the contract's limit).
MAX_WINDOW: Final = datetime.timedelta(days=400)

_ONE_DAY: Final = datetime.timedelta(days=1)
_EPOCH: Final = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def bucket_start(at: datetime.datetime) -> datetime.datetime:
    """The start of the :data:`BUCKET` that the aware instant ``at`` falls in, in UTC."""
    moment = aware_utc("at", at)
    return moment - (moment - _EPOCH) % BUCKET


@dataclass(frozen=True)
class LevelChange:
    """The zone moved from ``previous`` to ``level`` at ``at`` (event time), with this occupancy."""

    at: datetime.datetime
    previous: Level
    level: Level
    occupancy: int


@dataclass(frozen=True)
class OccupancyBucket:
    """The zone's occupancy over [start, start + BUCKET); buckets without readings do not exist."""

    start: datetime.datetime
    max_occupancy: int
    max_at: datetime.datetime
    last_occupancy: int
    mean_occupancy: int


@dataclass
class BucketTally:
    """The samples one unit of work took of a zone's bucket (one per reading applied, one per
    estimate aged by the timer), to be merged into the stored bucket: max and its time, last,
    sum and count (the stored mean is sum / samples)."""

    start: datetime.datetime
    max_occupancy: int
    max_at: datetime.datetime
    last_occupancy: int
    sum_occupancy: int
    samples: int


#: Tallies of one unit of work, by (zone id, bucket start).
Tallies = dict[tuple[str, datetime.datetime], BucketTally]


def tally(tallies: Tallies, zone_id: str, at: datetime.datetime, occupancy: int) -> None:
    """Counts the zone's occupancy at ``at`` (its clock) into the bucket ``at`` falls in."""
    start = bucket_start(at)
    bucket = tallies.get((zone_id, start))
    if bucket is None:
        tallies[(zone_id, start)] = BucketTally(start, occupancy, at, occupancy, occupancy, 1)
        return
    if occupancy > bucket.max_occupancy:
        bucket.max_occupancy, bucket.max_at = occupancy, at
    bucket.last_occupancy = occupancy
    bucket.sum_occupancy += occupancy
    bucket.samples += 1


@dataclass(frozen=True)
class LevelDuration:
    level: Level
    duration: datetime.timedelta


@dataclass(frozen=True)
class Peak:
    """The highest occupancy of a period, when it happened and the level in force then."""

    occupancy: int
    load_bp: int
    level: Level
    at: datetime.datetime


@dataclass(frozen=True)
class ZoneDay:
    """One Asia/Shanghai calendar day (or its part inside the window)."""

    date: datetime.date
    peak: Peak | None
    max_level: Level
    time_at_level: tuple[LevelDuration, ...]
    barriers_up: bool
    level_changes: int


@dataclass(frozen=True)
class ZoneHistory:
    zone_id: str
    start: datetime.datetime
    end: datetime.datetime
    time_at_level: tuple[LevelDuration, ...]
    peak: Peak | None
    level_changes: int
    #: ISO 8601 dates (Asia/Shanghai) of the days with barriers_up, oldest first.
    barrier_days: tuple[str, ...]
    days: tuple[ZoneDay, ...]

    @property
    def barrier_day_count(self) -> int:
        return len(self.barrier_days)


def check_window(start: datetime.datetime, end: datetime.datetime) -> tuple[datetime.datetime, datetime.datetime]:
    """The window [start, end) in UTC, or ValueError naming start_time or end_time."""
    start = aware_utc("start_time", start)
    end = aware_utc("end_time", end)
    if end <= start:
        raise ValueError("end_time must be after start_time")
    if end - start > MAX_WINDOW:
        raise ValueError(f"end_time must be at most {MAX_WINDOW.days} days after start_time")
    return start, end


def _local_midnight(day: datetime.date) -> datetime.datetime:
    return local_instant(day, datetime.time())


class _Timeline:
    """The window cut into contiguous non-empty segments of one level each, and the changes in it."""

    def __init__(
        self, level_at_start: Level, changes: Sequence[LevelChange], start: datetime.datetime, end: datetime.datetime
    ) -> None:
        self.starts: list[datetime.datetime] = []
        self.ends: list[datetime.datetime] = []
        self.levels: list[Level] = []
        self.change_at: list[datetime.datetime] = []
        self.change_level: list[Level] = []
        level, since = level_at_start, start
        previous_at: datetime.datetime | None = None
        for index, change in enumerate(changes):
            at = aware_utc(f"changes[{index}].at", change.at)
            if previous_at is not None and at < previous_at:
                raise ValueError(f"changes must be in time order: changes[{index}] is before changes[{index - 1}]")
            previous_at = at
            if at < start or at >= end:
                continue
            self.change_at.append(at)
            self.change_level.append(change.level)
            if at > since:
                self._add(since, at, level)
                since = at
            level = change.level
        self._add(since, end, level)

    def _add(self, start: datetime.datetime, end: datetime.datetime, level: Level) -> None:
        self.starts.append(start)
        self.ends.append(end)
        self.levels.append(level)

    def level_at(self, at: datetime.datetime) -> Level:
        # The segment with end > at starts at or before it (the segments cover the window).
        return self.levels[bisect.bisect_right(self.ends, at)]

    def durations(self, start: datetime.datetime, end: datetime.datetime) -> dict[Level, datetime.timedelta]:
        result = dict.fromkeys(Level, datetime.timedelta())
        index = bisect.bisect_right(self.ends, start)
        while index < len(self.starts) and self.starts[index] < end:
            result[self.levels[index]] += min(end, self.ends[index]) - max(start, self.starts[index])
            index += 1
        return result

    def entered(self, start: datetime.datetime, end: datetime.datetime) -> list[Level]:
        return self.change_level[bisect.bisect_left(self.change_at, start) : bisect.bisect_left(self.change_at, end)]


# A peak candidate: (max_occupancy, max_at in UTC, bucket).
_Candidate = tuple[int, datetime.datetime, OccupancyBucket]


def _time_at_level(durations: dict[Level, datetime.timedelta]) -> tuple[LevelDuration, ...]:
    return tuple(LevelDuration(level, durations[level]) for level in Level)


def summarise(
    config: ZoneConfig,
    changes: Sequence[LevelChange],
    level_at_start: Level,
    buckets: Sequence[OccupancyBucket],
    start: datetime.datetime,
    end: datetime.datetime,
) -> ZoneHistory:
    """The zone's history over [start, end) (see the module docstring for every rule)."""
    start, end = check_window(start, end)
    if not isinstance(level_at_start, Level):
        raise ValueError("level_at_start must be a Level")
    check_capacity(config.capacity)
    timeline = _Timeline(level_at_start, changes, start, end)
    barrier_levels = frozenset(level for level in Level if Measure.BARRIERS_UP in measures_in_force(config, level))

    def peak_of(bucket: OccupancyBucket, at: datetime.datetime) -> Peak:
        occupancy = bucket.max_occupancy
        return Peak(occupancy, load_bp(occupancy, config.capacity), timeline.level_at(at), at)

    # The highest bucket of the window and of each day; ties to the earliest maximum.
    best: _Candidate | None = None
    best_by_day: dict[datetime.date, _Candidate] = {}
    for index, bucket in enumerate(buckets):
        at = aware_utc(f"buckets[{index}].max_at", bucket.max_at)
        if not start <= at < end:
            continue
        candidate = (bucket.max_occupancy, at, bucket)
        if _beats(candidate, best):
            best = candidate
        day = at.astimezone(SHANGHAI).date()
        if _beats(candidate, best_by_day.get(day)):
            best_by_day[day] = candidate

    days: list[ZoneDay] = []
    day = start.astimezone(SHANGHAI).date()
    last_day = (end - datetime.timedelta.resolution).astimezone(SHANGHAI).date()
    while day <= last_day:
        day_start = max(start, _local_midnight(day))
        day_end = min(end, _local_midnight(day + _ONE_DAY))
        durations = timeline.durations(day_start, day_end)
        entered = timeline.entered(day_start, day_end)
        reached = {level for level, spent in durations.items() if spent} | set(entered)
        held = best_by_day.get(day)
        days.append(
            ZoneDay(
                date=day,
                peak=None if held is None else peak_of(held[2], held[1]),
                max_level=max(reached),
                time_at_level=_time_at_level(durations),
                barriers_up=bool(reached & barrier_levels),
                level_changes=len(entered),
            )
        )
        day += _ONE_DAY

    return ZoneHistory(
        zone_id=config.zone_id,
        start=start,
        end=end,
        time_at_level=_time_at_level(timeline.durations(start, end)),
        peak=None if best is None else peak_of(best[2], best[1]),
        level_changes=len(timeline.change_at),
        barrier_days=tuple(zone_day.date.isoformat() for zone_day in days if zone_day.barriers_up),
        days=tuple(days),
    )


def _beats(candidate: _Candidate, held: _Candidate | None) -> bool:
    # Higher wins; on a tie the earlier maximum is the peak.
    return held is None or candidate[0] > held[0] or (candidate[0] == held[0] and candidate[1] < held[1])
