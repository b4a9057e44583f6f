"""A zone's history over a window (services/crowd/domain/history.py): time at each level to the
microsecond, changes at the window's edges, Asia/Shanghai days, barrier days, peaks, validation.

The zone is the West Lake music fountain's 湖滨 (hubin), with default-style levels: III at 60%,
II at 80% (barriers go up), I at 100%.
"""

from __future__ import annotations

import datetime

import pytest

from services.crowd.domain.history import (
    BUCKET,
    MAX_WINDOW,
    LevelChange,
    LevelDuration,
    OccupancyBucket,
    Peak,
    ZoneHistory,
    bucket_start,
    check_window,
    summarise,
)
from services.crowd.domain.zones import Level, LevelRule, Measure
from tests.support.hubin import LEVELS, hubin

UTC = datetime.UTC
US = datetime.timedelta(microseconds=1)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime.datetime:
    return datetime.datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


def change(at: datetime.datetime, previous: Level, level: Level, occupancy: int = 0) -> LevelChange:
    return LevelChange(at=at, previous=previous, level=level, occupancy=occupancy)


def bucket(start: datetime.datetime, max_occupancy: int, max_at: datetime.datetime | None = None) -> OccupancyBucket:
    return OccupancyBucket(
        start=start,
        max_occupancy=max_occupancy,
        max_at=max_at if max_at is not None else start + datetime.timedelta(minutes=2),
        last_occupancy=max_occupancy,
        mean_occupancy=max_occupancy,
    )


def durations(time_at_level: tuple[LevelDuration, ...]) -> dict[Level, datetime.timedelta]:
    assert [entry.level for entry in time_at_level] == [Level.NONE, Level.III, Level.II, Level.I]
    return {entry.level: entry.duration for entry in time_at_level}


def minutes(n: float) -> datetime.timedelta:
    return datetime.timedelta(minutes=n)


# --- window arithmetic -------------------------------------------------------------------------


def test_durations_sum_exactly_to_the_window_and_follow_the_changes() -> None:
    start = utc(2024, 5, 1, 2, 0, 0, 1)
    end = utc(2024, 5, 3, 7, 13, 59, 999_999)
    changes = [
        change(utc(2024, 4, 30, 23), Level.NONE, Level.III),  # before the window: ignored
        change(utc(2024, 5, 1, 10, 0, 0, 7), Level.III, Level.II),
        change(utc(2024, 5, 1, 11, 30), Level.II, Level.I),
        change(utc(2024, 5, 1, 11, 45, 0, 3), Level.I, Level.II),
        change(utc(2024, 5, 1, 13), Level.II, Level.NONE),
        change(utc(2024, 5, 2, 9), Level.NONE, Level.III),
        change(utc(2024, 5, 3, 7, 14), Level.III, Level.NONE),  # after the window: ignored
    ]
    history = summarise(hubin(), changes, Level.III, [], start, end)
    spent = durations(history.time_at_level)
    assert sum(spent.values(), datetime.timedelta()) == end - start
    assert spent[Level.I] == datetime.timedelta(minutes=15, microseconds=3)
    assert spent[Level.II] == utc(2024, 5, 1, 13) - utc(2024, 5, 1, 10, 0, 0, 7) - spent[Level.I]
    assert spent[Level.III] == (utc(2024, 5, 1, 10, 0, 0, 7) - start) + (end - utc(2024, 5, 2, 9))
    assert spent[Level.NONE] == utc(2024, 5, 2, 9) - utc(2024, 5, 1, 13)
    assert history.level_changes == 5
    # Each day's durations add up to the day's part of the window, and the days to the window.
    day_total = datetime.timedelta()
    for day in history.days:
        day_total += sum(durations(day.time_at_level).values(), datetime.timedelta())
    assert day_total == end - start
    assert history.start == start and history.end == end and history.zone_id == "hubin"


def test_a_change_exactly_at_start_is_in_the_window_and_its_level_holds_from_start() -> None:
    start, end = utc(2024, 5, 1, 4), utc(2024, 5, 1, 6)
    history = summarise(hubin(), [change(start, Level.NONE, Level.III)], Level.NONE, [], start, end)
    spent = durations(history.time_at_level)
    assert spent[Level.III] == end - start
    assert spent[Level.NONE] == datetime.timedelta()
    assert history.level_changes == 1
    assert history.days[0].level_changes == 1
    # The level left at start lasted no time, so it is not a level reached that day.
    assert history.days[0].max_level is Level.III


def test_a_change_exactly_at_end_is_outside_and_one_microsecond_before_is_inside() -> None:
    start, end = utc(2024, 5, 1, 4), utc(2024, 5, 1, 6)
    at_end = summarise(hubin(), [change(end, Level.NONE, Level.II)], Level.NONE, [], start, end)
    assert durations(at_end.time_at_level)[Level.NONE] == end - start
    assert at_end.level_changes == 0
    assert at_end.barrier_days == ()
    assert at_end.days[0].max_level is Level.NONE

    before_end = summarise(hubin(), [change(end - US, Level.NONE, Level.II)], Level.NONE, [], start, end)
    spent = durations(before_end.time_at_level)
    assert spent[Level.II] == US
    assert spent[Level.NONE] == end - start - US
    assert before_end.level_changes == 1
    assert before_end.barrier_days == ("2024-05-01",)


def test_a_window_inside_one_level() -> None:
    start, end = utc(2024, 5, 1, 11), utc(2024, 5, 1, 12, 30)
    changes = [change(utc(2024, 5, 1, 10), Level.III, Level.II), change(utc(2024, 5, 1, 13), Level.II, Level.III)]
    history = summarise(hubin(), changes, Level.II, [], start, end)
    assert durations(history.time_at_level) == {
        Level.NONE: datetime.timedelta(),
        Level.III: datetime.timedelta(),
        Level.II: end - start,
        Level.I: datetime.timedelta(),
    }
    assert history.level_changes == 0
    assert [day.max_level for day in history.days] == [Level.II]
    assert history.barrier_days == ("2024-05-01",)
    assert history.peak is None


def test_simultaneous_changes_count_and_the_last_one_holds() -> None:
    start, end = utc(2024, 5, 1, 4), utc(2024, 5, 1, 6)
    at = utc(2024, 5, 1, 5)
    changes = [change(at, Level.III, Level.II), change(at, Level.II, Level.III)]
    history = summarise(hubin(), changes, Level.III, [], start, end)
    assert durations(history.time_at_level)[Level.II] == datetime.timedelta()
    assert durations(history.time_at_level)[Level.III] == end - start
    assert history.level_changes == 2
    # II was entered, so it was reached and its barriers were ordered.
    assert history.days[0].max_level is Level.II
    assert history.barrier_days == ("2024-05-01",)


# --- Asia/Shanghai days ------------------------------------------------------------------------


def test_days_split_at_shanghai_midnight_which_is_1600_utc() -> None:
    # 2024-05-01 00:00 to 2024-05-03 00:00 in Shanghai.
    start, end = utc(2024, 4, 30, 16), utc(2024, 5, 2, 16)
    midnight = utc(2024, 5, 1, 16)  # 2024-05-02 00:00 in Shanghai
    changes = [
        change(midnight - US, Level.NONE, Level.III),
        change(midnight + minutes(10), Level.III, Level.NONE),
    ]
    history = summarise(hubin(), changes, Level.NONE, [], start, end)
    assert [day.date for day in history.days] == [datetime.date(2024, 5, 1), datetime.date(2024, 5, 2)]
    first, second = (durations(day.time_at_level) for day in history.days)
    assert first[Level.III] == US
    assert first[Level.NONE] == datetime.timedelta(days=1) - US
    assert second[Level.III] == minutes(10)
    assert second[Level.NONE] == datetime.timedelta(days=1) - minutes(10)
    assert [day.level_changes for day in history.days] == [1, 1]
    assert [day.max_level for day in history.days] == [Level.III, Level.III]


def test_a_window_of_exactly_one_shanghai_day_has_one_day() -> None:
    history = summarise(hubin(), [], Level.NONE, [], utc(2024, 4, 30, 16), utc(2024, 5, 1, 16))
    assert [day.date for day in history.days] == [datetime.date(2024, 5, 1)]
    # One microsecond more reaches into the next day.
    longer = summarise(hubin(), [], Level.NONE, [], utc(2024, 4, 30, 16), utc(2024, 5, 1, 16) + US)
    assert [day.date for day in longer.days] == [datetime.date(2024, 5, 1), datetime.date(2024, 5, 2)]
    assert durations(longer.days[1].time_at_level)[Level.NONE] == US


def test_partial_days_at_the_edges_count_only_their_part() -> None:
    # 20:00 on 1 May to 02:00 on 2 May, Shanghai.
    history = summarise(hubin(), [], Level.III, [], utc(2024, 5, 1, 12), utc(2024, 5, 1, 18))
    assert [day.date for day in history.days] == [datetime.date(2024, 5, 1), datetime.date(2024, 5, 2)]
    assert [durations(day.time_at_level)[Level.III] for day in history.days] == [
        datetime.timedelta(hours=4),
        datetime.timedelta(hours=2),
    ]


def test_days_are_oldest_first_over_a_long_window() -> None:
    start = utc(2024, 1, 1, 16)
    end = start + datetime.timedelta(days=400)
    history = summarise(hubin(), [], Level.NONE, [], start, end)
    assert len(history.days) == 400
    assert history.days[0].date == datetime.date(2024, 1, 2)
    assert history.days[-1].date == datetime.date(2025, 2, 4)
    assert all(
        a.date + datetime.timedelta(days=1) == b.date for a, b in zip(history.days, history.days[1:], strict=False)
    )


# --- barrier days ------------------------------------------------------------------------------


def shanghai(day: int, hour: int, minute: int = 0) -> datetime.datetime:
    """An instant given in Shanghai time in May 2024, as UTC."""
    return utc(2024, 5, day, hour, minute) - datetime.timedelta(hours=8)


def test_barrier_days_count_one_minute_at_ii_but_not_a_day_only_at_iii() -> None:
    start, end = shanghai(1, 0), shanghai(5, 0)
    changes = [
        # 1 May: II for one minute.
        change(shanghai(1, 19), Level.NONE, Level.III),
        change(shanghai(1, 19, 5), Level.III, Level.II),
        change(shanghai(1, 19, 6), Level.II, Level.III),
        change(shanghai(1, 19, 30), Level.III, Level.NONE),
        # 2 May: III only, all evening.
        change(shanghai(2, 18), Level.NONE, Level.III),
        change(shanghai(2, 22), Level.III, Level.NONE),
        # 3 May: II until exactly midnight; 4 May starts at NONE, so 4 May has no barriers.
        change(shanghai(3, 21), Level.NONE, Level.II),
        change(shanghai(4, 0), Level.II, Level.NONE),
    ]
    history = summarise(hubin(), changes, Level.NONE, [], start, end)
    assert [day.barriers_up for day in history.days] == [True, False, True, False]
    assert [day.max_level for day in history.days] == [Level.II, Level.III, Level.II, Level.NONE]
    assert history.barrier_days == ("2024-05-01", "2024-05-03")
    assert history.barrier_day_count == 2
    assert durations(history.days[0].time_at_level)[Level.II] == minutes(1)
    assert [day.level_changes for day in history.days] == [4, 2, 1, 1]


def test_barriers_still_up_one_microsecond_past_midnight_count_for_the_next_day() -> None:
    changes = [change(shanghai(3, 21), Level.NONE, Level.II), change(shanghai(4, 0) + US, Level.II, Level.NONE)]
    history = summarise(hubin(), changes, Level.NONE, [], shanghai(3, 0), shanghai(5, 0))
    assert history.barrier_days == ("2024-05-03", "2024-05-04")
    assert durations(history.days[1].time_at_level)[Level.II] == US


def test_barriers_in_force_at_the_window_start_count() -> None:
    history = summarise(hubin(), [], Level.I, [], shanghai(2, 12), shanghai(2, 13))
    assert history.barrier_days == ("2024-05-02",)
    assert history.days[0].max_level is Level.I


def test_barriers_at_iii_are_in_force_at_the_levels_above_it_too() -> None:
    levels = (
        LevelRule(Level.III, 6000, (Measure.BARRIERS_UP,)),
        LevelRule(Level.II, 8000, (Measure.TICKET_SALES_STOP,)),
        LevelRule(Level.I, 10000, (Measure.ENTRY_CLOSED,)),
    )
    # A day only at III and a day that jumped straight to I.
    changes = [
        change(shanghai(1, 19), Level.NONE, Level.III),
        change(shanghai(1, 20), Level.III, Level.NONE),
        change(shanghai(3, 19), Level.NONE, Level.I),
        change(shanghai(3, 20), Level.I, Level.NONE),
    ]
    history = summarise(hubin(levels=levels), changes, Level.NONE, [], shanghai(1, 0), shanghai(4, 0))
    assert history.barrier_days == ("2024-05-01", "2024-05-03")


def test_no_barrier_measure_means_no_barrier_days() -> None:
    levels = tuple(LevelRule(rule.level, rule.threshold_bp, (Measure.ANNOUNCE,)) for rule in LEVELS)
    history = summarise(hubin(levels=levels), [], Level.I, [], shanghai(1, 0), shanghai(3, 0))
    assert history.barrier_days == ()
    assert history.barrier_day_count == 0


# --- peaks -------------------------------------------------------------------------------------


def test_the_peak_is_the_highest_bucket_with_the_level_in_force_at_its_maximum() -> None:
    start, end = shanghai(1, 0), shanghai(3, 0)
    at_ii = shanghai(1, 19, 7)
    changes = [change(shanghai(1, 19), Level.NONE, Level.III), change(at_ii, Level.III, Level.II)]
    buckets = [
        bucket(shanghai(1, 18, 55), 7_000),
        bucket(shanghai(1, 19, 5), 24_001, max_at=at_ii),  # a change at the very instant: its level
        bucket(shanghai(2, 12), 9_000),
    ]
    history = summarise(hubin(capacity=30_000), changes, Level.NONE, buckets, start, end)
    assert history.peak == Peak(occupancy=24_001, load_bp=8000, level=Level.II, at=at_ii)
    assert history.days[0].peak == history.peak
    assert history.days[1].peak == Peak(9_000, 3000, Level.II, shanghai(2, 12, 2))


def test_the_peak_one_microsecond_before_a_change_has_the_level_before_it() -> None:
    at_ii = shanghai(1, 19, 7)
    changes = [change(at_ii, Level.III, Level.II)]
    buckets = [bucket(shanghai(1, 19, 5), 7_900, max_at=at_ii - US)]
    history = summarise(hubin(), changes, Level.III, buckets, shanghai(1, 0), shanghai(2, 0))
    assert history.peak == Peak(7_900, 7900, Level.III, at_ii - US)


def test_a_tie_goes_to_the_earliest_maximum() -> None:
    buckets = [bucket(shanghai(1, 20), 8_000), bucket(shanghai(1, 19), 8_000), bucket(shanghai(1, 21), 7_999)]
    history = summarise(hubin(), [], Level.NONE, buckets, shanghai(1, 0), shanghai(2, 0))
    assert history.peak is not None
    assert history.peak.at == shanghai(1, 19, 2)


def test_only_maxima_inside_the_window_count_and_a_day_without_buckets_has_no_peak() -> None:
    start, end = shanghai(1, 10, 1), shanghai(2, 10, 1)
    buckets = [
        bucket(shanghai(1, 10), 9_999, max_at=shanghai(1, 10, 1) - US),  # before start
        bucket(shanghai(1, 10), 5_000, max_at=shanghai(1, 10, 1)),  # at start: inside
        bucket(shanghai(2, 10), 9_999, max_at=shanghai(2, 10, 1)),  # at end: outside
    ]
    history = summarise(hubin(), [], Level.NONE, buckets, start, end)
    assert history.peak is not None and history.peak.occupancy == 5_000
    assert history.days[0].peak == history.peak
    assert history.days[1].peak is None


def test_a_peak_belongs_to_its_shanghai_day() -> None:
    midnight = shanghai(2, 0)
    buckets = [bucket(midnight - BUCKET, 6_000, max_at=midnight - US), bucket(midnight, 5_000, max_at=midnight)]
    history = summarise(hubin(), [], Level.NONE, buckets, shanghai(1, 0), shanghai(3, 0))
    assert [day.peak.occupancy if day.peak else None for day in history.days] == [6_000, 5_000]
    assert history.peak is not None and history.peak.at == midnight - US


# --- validation --------------------------------------------------------------------------------


def test_the_window_must_end_after_it_starts() -> None:
    at = utc(2024, 5, 1)
    with pytest.raises(ValueError, match="end_time must be after start_time"):
        summarise(hubin(), [], Level.NONE, [], at, at)
    with pytest.raises(ValueError, match="end_time must be after start_time"):
        summarise(hubin(), [], Level.NONE, [], at, at - US)
    assert check_window(at, at + US) == (at, at + US)


def test_the_window_is_at_most_400_days() -> None:
    start = utc(2024, 5, 1)
    assert MAX_WINDOW == datetime.timedelta(days=400)
    history = summarise(hubin(), [], Level.NONE, [], start, start + MAX_WINDOW)
    assert isinstance(history, ZoneHistory)
    with pytest.raises(ValueError, match="end_time must be at most 400 days after start_time"):
        summarise(hubin(), [], Level.NONE, [], start, start + MAX_WINDOW + US)


def test_naive_times_are_refused_naming_the_field() -> None:
    naive = datetime.datetime(2024, 5, 1)
    with pytest.raises(ValueError, match="start_time must be timezone-aware"):
        check_window(naive, utc(2024, 5, 2))
    with pytest.raises(ValueError, match="end_time must be timezone-aware"):
        check_window(utc(2024, 4, 30), naive)
    with pytest.raises(TypeError, match="start_time must be an aware datetime"):
        check_window(datetime.date(2024, 5, 1), utc(2024, 5, 2))  # type: ignore[arg-type]


def test_a_zone_without_capacity_is_refused() -> None:
    with pytest.raises(ValueError, match=r"capacity must be positive \(got 0\)"):
        summarise(hubin(capacity=0), [], Level.NONE, [], utc(2024, 5, 1), utc(2024, 5, 2))


def test_buckets_start_at_multiples_of_five_minutes_in_utc() -> None:
    assert bucket_start(utc(2024, 5, 1, 10, 5)) == utc(2024, 5, 1, 10, 5)
    assert bucket_start(utc(2024, 5, 1, 10, 10) - US) == utc(2024, 5, 1, 10, 5)
    # 19:07 in Shanghai is 11:07 UTC: the bucket is given in UTC.
    shanghai_tz = datetime.timezone(datetime.timedelta(hours=8))
    start = bucket_start(datetime.datetime(2024, 5, 1, 19, 7, tzinfo=shanghai_tz))
    assert start == utc(2024, 5, 1, 11, 5) and start.tzinfo is UTC


def test_times_in_another_zone_are_the_same_instants() -> None:
    shanghai_tz = datetime.timezone(datetime.timedelta(hours=8))
    start = datetime.datetime(2024, 5, 1, 0, tzinfo=shanghai_tz)
    history = summarise(hubin(), [], Level.NONE, [], start, start + datetime.timedelta(days=1))
    assert history.start == utc(2024, 4, 30, 16) and history.start.tzinfo is UTC
    assert [day.date for day in history.days] == [datetime.date(2024, 5, 1)]


def test_changes_out_of_order_are_refused() -> None:
    changes = [change(utc(2024, 5, 1, 5), Level.NONE, Level.III), change(utc(2024, 5, 1, 4), Level.III, Level.NONE)]
    with pytest.raises(ValueError, match=r"changes must be in time order: changes\[1\]"):
        summarise(hubin(), changes, Level.NONE, [], utc(2024, 5, 1), utc(2024, 5, 2))
